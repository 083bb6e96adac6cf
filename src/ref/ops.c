/* Numeric building blocks of the CPU reference: plain loops, fp32, fixed summation order. */
#include "ref/ops.h"

#include "mk/mk.h"

#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <unistd.h>

enum {
    MAX_THREADS = 64,
    /* Elements below which weight conversion stays on one thread (low enough that the
     * tiny golden checkpoints take the threaded path, which their tests then check). */
    CONVERT_MIN_PARALLEL = 1 << 14,
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

static int online_cores(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > MAX_THREADS ? MAX_THREADS : (int)c;
}

/* Run fn(job 0) .. fn(job nt-1) (jobs of job_size bytes each), job 0 on the calling
 * thread and the others on their own threads; a job whose thread fails to start runs on
 * the calling thread. Returns when all are done. */
static void run_parallel(void *(*fn)(void *), void *jobs, size_t job_size, int nt)
{
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, fn, (char *)jobs + t * job_size) == 0;
    for (int t = 0; t < nt; t++)
        if (!started[t]) fn((char *)jobs + t * job_size);
    for (int t = 1; t < nt; t++)
        if (started[t]) pthread_join(tid[t], NULL);
}

static void *matmul_thread(void *arg)
{
    matmul_rows(arg);
    return NULL;
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
    struct matmul_job jobs[MAX_THREADS];
    for (int t = 0; t < nt; t++)
        jobs[t] = (struct matmul_job){out, x, w, b, n, n_in, n_out,
                                      (int)((int64_t)n_out * t / nt),
                                      (int)((int64_t)n_out * (t + 1) / nt)};
    run_parallel(matmul_thread, jobs, sizeof jobs[0], nt);
}

/* Elements [lo, hi) of the concatenation of src[0..n) converted into the dst arrays. */
struct convert_job {
    const struct mk_tensor *const *src;
    float *const *dst;
    int n;
    int64_t lo, hi;
};

static void *convert_thread(void *arg)
{
    const struct convert_job *j = arg;
    int64_t base = 0; /* first element of src[i] in the concatenation */
    for (int i = 0; i < j->n; i++) {
        const struct mk_tensor *t = j->src[i];
        const int64_t len = mk_tensor_numel(t);
        const int64_t a = j->lo > base ? j->lo : base;
        const int64_t b = j->hi < base + len ? j->hi : base + len;
        if (a < b) {
            const size_t es = mk_dtype_size(t->dtype);
            struct mk_tensor part = *t; /* elements [a - base, b - base) of t, flat */
            part.ndim = 1;
            part.shape[0] = b - a;
            part.data = (const char *)t->data + (size_t)(a - base) * es;
            part.nbytes = (size_t)(b - a) * es;
            mk_tensor_to_f32(&part, j->dst[i] + (a - base));
        }
        base += len;
    }
    return NULL;
}

void ref_to_f32(const struct mk_tensor *const *src, float *const *dst, int n)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += mk_tensor_numel(src[i]);
    const int nt = total < CONVERT_MIN_PARALLEL ? 1 : online_cores();
    struct convert_job jobs[MAX_THREADS];
    for (int t = 0; t < nt; t++)
        jobs[t] = (struct convert_job){src, dst, n, total * t / nt, total * (t + 1) / nt};
    run_parallel(convert_thread, jobs, sizeof jobs[0], nt);
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
