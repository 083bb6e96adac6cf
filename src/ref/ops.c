/* Numeric building blocks of the CPU reference: plain loops, fp32, fixed summation order. */
#include "ref/ops.h"

#include "mk/mk.h"

#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <unistd.h>

enum {
    MATMUL_MAX_THREADS = 64,
    /* Multiply-adds below which one thread does the whole product: thread start-up
     * (~20 us) would cost more than it saves. */
    MATMUL_MIN_PARALLEL_MACS = 1 << 21,
};

float ref_dot(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

struct matmul_job {
    float *out;
    const float *x, *w, *b;
    int n, n_in, n_out;
    int o0, o1; /* this thread's output rows [o0, o1) */
};

static void matmul_rows(const struct matmul_job *j)
{
    for (int o = j->o0; o < j->o1; o++) {
        const float *wo = j->w + (int64_t)o * j->n_in; /* [n_in], reused for every token */
        const float bias = j->b ? j->b[o] : 0.0f;
        for (int t = 0; t < j->n; t++)
            j->out[(int64_t)t * j->n_out + o] = ref_dot(wo, j->x + (int64_t)t * j->n_in, j->n_in) + bias;
    }
}

static void *matmul_thread(void *arg)
{
    matmul_rows(arg);
    return NULL;
}

static int online_cores(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > MATMUL_MAX_THREADS ? MATMUL_MAX_THREADS : (int)c;
}

void ref_matmul(float *out, const float *x, const float *w, const float *b, int n, int n_in,
                int n_out)
{
    int64_t macs = (int64_t)n * n_in * n_out;
    int nt = online_cores();
    if (nt > n_out) nt = n_out;
    if (macs < (int64_t)MATMUL_MIN_PARALLEL_MACS * 2 || nt < 2) {
        struct matmul_job j = {out, x, w, b, n, n_in, n_out, 0, n_out};
        matmul_rows(&j);
        return;
    }
    struct matmul_job jobs[MATMUL_MAX_THREADS];
    pthread_t tid[MATMUL_MAX_THREADS];
    bool started[MATMUL_MAX_THREADS] = {false};
    for (int t = 0; t < nt; t++)
        jobs[t] = (struct matmul_job){out, x, w, b, n, n_in, n_out,
                                      (int)((int64_t)n_out * t / nt),
                                      (int)((int64_t)n_out * (t + 1) / nt)};
    /* Share 0 runs on the calling thread; a share whose thread fails to start runs inline. */
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, matmul_thread, &jobs[t]) == 0;
    for (int t = 0; t < nt; t++)
        if (!started[t]) matmul_rows(&jobs[t]);
    for (int t = 1; t < nt; t++)
        if (started[t]) pthread_join(tid[t], NULL);
}

void ref_rmsnorm(float *out, const float *x, const float *w, int dim, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    const float inv_rms = 1.0f / sqrtf((float)(ss / dim) + eps);
    for (int i = 0; i < dim; i++) out[i] = w[i] * (x[i] * inv_rms);
}

void ref_rope(float *x, int n_heads, int D, int pos, const float *inv_freq)
{
    const int half = D / 2;
    for (int i = 0; i < half; i++) {
        const float angle = (float)pos * inv_freq[i];
        const float c = cosf(angle), s = sinf(angle);
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (int64_t)h * D;
            const float x1 = xh[i], x2 = xh[i + half];
            xh[i] = x1 * c - x2 * s;
            xh[i + half] = x2 * c + x1 * s;
        }
    }
}

void ref_silu_mul(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ref_softmax(float *x, int n)
{
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}
