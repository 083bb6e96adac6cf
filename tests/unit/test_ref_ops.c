/* The reference's building blocks against direct double-precision formulas, and the
 * threaded paths (matmul split by rows, conversion split by elements) against the
 * single-threaded result, bit for bit. */
#include "check.h"
#include "ref/ops.h"

#include <stdbool.h>

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void matmul_threads_match_one(void)
{
    /* 3 x 700 x 3001 = 6.3M multiply-adds: above the threshold, so it runs threaded. */
    enum { N = 3, IN = 700, OUT = 3001 };
    uint32_t seed = 1;
    float *x = malloc(sizeof(float) * N * IN), *w = malloc(sizeof(float) * OUT * IN);
    float *b = malloc(sizeof(float) * OUT), *out = malloc(sizeof(float) * N * OUT);
    for (int i = 0; i < N * IN; i++) x[i] = frand(&seed);
    for (int i = 0; i < OUT * IN; i++) w[i] = frand(&seed);
    for (int i = 0; i < OUT; i++) b[i] = frand(&seed);
    ref_matmul(out, x, w, b, N, IN, OUT);
    int exact = 0;
    double worst = 0;
    for (int t = 0; t < N; t++)
        for (int o = 0; o < OUT; o++) {
            float one = ref_dot(w + (int64_t)o * IN, x + (int64_t)t * IN, IN) + b[o];
            exact += out[t * OUT + o] == one;
            double d = b[o];
            for (int i = 0; i < IN; i++) d += (double)w[(int64_t)o * IN + i] * x[t * IN + i];
            worst = fmax(worst, fabs(d - out[t * OUT + o]));
        }
    CHECK(exact == N * OUT);
    CHECKF(worst < 1e-3, "max |fp32 - fp64| = %g over sums of 700 products", worst);
    free(x);
    free(w);
    free(b);
    free(out);
}

static void conversion_split_is_exact(void)
{
    /* Three bf16 tensors whose element ranges the threads cut in odd places. */
    enum { A = 10007, B = 3, C = 40000 };
    static uint16_t da[A], db[B], dc[C];
    uint32_t seed = 7;
    for (int i = 0; i < A; i++) da[i] = (uint16_t)(seed = seed * 1664525u + 1013904223u) >> 1;
    for (int i = 0; i < B; i++) db[i] = 0x3f80 + (uint16_t)i;
    for (int i = 0; i < C; i++) dc[i] = (uint16_t)((i * 2654435761u) >> 17);
    struct mk_tensor t[3] = {
        {.name = "a", .dtype = MK_DTYPE_BF16, .ndim = 2, .shape = {1, A}, .data = da, .nbytes = sizeof da},
        {.name = "b", .dtype = MK_DTYPE_BF16, .ndim = 1, .shape = {B}, .data = db, .nbytes = sizeof db},
        {.name = "c", .dtype = MK_DTYPE_BF16, .ndim = 2, .shape = {200, 200}, .data = dc, .nbytes = sizeof dc},
    };
    static float fa[A], fb[B], fc[C];
    const struct mk_tensor *src[3] = {&t[0], &t[1], &t[2]};
    float *dst[3] = {fa, fb, fc};
    ref_to_f32(src, dst, 3);
    bool ok = true;
    for (int i = 0; i < A; i++) ok &= fa[i] == mk_bf16_to_f32(da[i]) || (isnan(fa[i]) && isnan(mk_bf16_to_f32(da[i])));
    for (int i = 0; i < B; i++) ok &= fb[i] == mk_bf16_to_f32(db[i]);
    for (int i = 0; i < C; i++) ok &= fc[i] == mk_bf16_to_f32(dc[i]) || (isnan(fc[i]) && isnan(mk_bf16_to_f32(dc[i])));
    CHECK(ok);
    CHECK(fb[0] == 1.0f);
}

static void rmsnorm_rope_softmax(void)
{
    enum { D = 16 };
    uint32_t seed = 3;
    float x[D], w[D], y[D];
    for (int i = 0; i < D; i++) x[i] = frand(&seed), w[i] = 1.0f + frand(&seed);
    ref_rmsnorm(y, x, w, D, 1e-5f);
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < D; i++) CHECK_NEAR(y[i], x[i] / sqrt(ss / D + 1e-5) * w[i], 1e-6);

    /* RoPE, two heads: pairs (i, i + D/2) rotate by pos * inv_freq[i]. */
    float q[2 * D], inv[D / 2];
    for (int i = 0; i < 2 * D; i++) q[i] = frand(&seed);
    for (int i = 0; i < D / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / D);
    float r[2 * D];
    memcpy(r, q, sizeof q);
    ref_rope(r, 2, D, 37, inv);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < D / 2; i++) {
            double a = 37.0 * inv[i], x1 = q[h * D + i], x2 = q[h * D + i + D / 2];
            CHECK_NEAR(r[h * D + i], x1 * cos(a) - x2 * sin(a), 1e-5);
            CHECK_NEAR(r[h * D + i + D / 2], x2 * cos(a) + x1 * sin(a), 1e-5);
        }
    float s[5] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(s[i]);
    float e[5];
    memcpy(e, s, sizeof s);
    ref_softmax(e, 5);
    for (int i = 0; i < 5; i++) CHECK_NEAR(e[i], exp(s[i]) / z, 1e-7);
    float g[3] = {-2.0f, 0.0f, 3.0f}, u[3] = {0.5f, 2.0f, -1.0f};
    ref_silu_mul(g, u, 3);
    CHECK_NEAR(g[0], -2.0 / (1 + exp(2.0)) * 0.5, 1e-7);
    CHECK(g[1] == 0.0f);
    CHECK_NEAR(g[2], 3.0 / (1 + exp(-3.0)) * -1.0, 1e-6);
}

int main(void)
{
    RUN(matmul_threads_match_one);
    RUN(conversion_split_is_exact);
    RUN(rmsnorm_rope_softmax);
    CHECK_EXIT();
}
