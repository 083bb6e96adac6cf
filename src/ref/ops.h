/* The numeric building blocks of the CPU reference (private to src/ref). Every function
 * works on row-major fp32 arrays; shapes are given as [rows, cols]. */
#ifndef MK_REF_OPS_H
#define MK_REF_OPS_H

#include "mk/load.h"

#include <stdint.h>

/* out[t, o] = dot(w[o, :], x[t, :]) + (b ? b[o] : 0) for t < n, o < n_out.
 * x [n, n_in], w [n_out, n_in], b [n_out] or NULL, out [n, n_out].
 * Split over the online cores by output rows when the product is large enough to pay
 * for the threads; each output is one fixed-order dot product, so the result does not
 * depend on the thread count. */
void ref_matmul(float *out, const float *x, const float *w, const float *b, int n, int n_in,
                int n_out);

/* dst[i] = the elements of src[i] as fp32, i < n; the elements of all tensors together
 * are split evenly over the online cores. */
void ref_to_f32(const struct mk_tensor *const *src, float *const *dst, int n);

/* One row: out[i] = x[i] * rsqrt(mean(x^2) + eps) * w[i], i < dim (out may be x). */
void ref_rmsnorm(float *out, const float *x, const float *w, int dim, float eps);

/* RoPE on `n_heads` consecutive heads of head_dim D at position pos, in place, HF's
 * rotate_half convention: for i < D/2, (x[i], x[i + D/2]) rotates by angle
 * pos * inv_freq[i] (inv_freq [D/2]). */
void ref_rope(float *x, int n_heads, int D, int pos, const float *inv_freq);

/* gate[i] = silu(gate[i]) * up[i], i < n. */
void ref_silu_mul(float *gate, const float *up, int64_t n);

/* In place softmax of x[0..n). */
void ref_softmax(float *x, int n);

/* dot(a, b) over n elements with 8 partial sums (vectorizable, fixed order). */
float ref_dot(const float *a, const float *b, int n);

#endif
