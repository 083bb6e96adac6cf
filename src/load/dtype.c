/* Element types of checkpoint tensors and the conversions between them.
 * bf16 = the top 16 bits of an IEEE fp32; f16 = IEEE binary16 (1-5-10). */
#include "mk/load.h"

#include <string.h>

const char *mk_dtype_name(enum mk_dtype t)
{
    switch (t) {
    case MK_DTYPE_F32: return "f32";
    case MK_DTYPE_F16: return "f16";
    case MK_DTYPE_BF16: return "bf16";
    case MK_DTYPE_COUNT: break;
    }
    return "?";
}

size_t mk_dtype_size(enum mk_dtype t)
{
    switch (t) {
    case MK_DTYPE_F32: return 4;
    case MK_DTYPE_F16: return 2;
    case MK_DTYPE_BF16: return 2;
    case MK_DTYPE_COUNT: break;
    }
    MK_ASSERTF(0, "mk_dtype_size: not a dtype");
    return 0;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float mk_bf16_to_f32(uint16_t v) { return bits_f32((uint32_t)v << 16); }

uint16_t mk_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign, force a quiet payload */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float mk_f16_to_f32(uint16_t v)
{
    uint32_t sign = (uint32_t)(v & 0x8000u) << 16;
    uint32_t exp = (v >> 10) & 0x1fu;
    uint32_t man = v & 0x3ffu;
    if (exp == 0x1f) /* inf / NaN */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: man * 2^-24, exact in fp32 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

int64_t mk_tensor_numel(const struct mk_tensor *t)
{
    int64_t n = 1; /* the parser bounds the product of the non-zero dims by 2^48 */
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return 0;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* Data may sit at any byte offset in the file, so elements are read with memcpy. */
static uint16_t load_u16(const unsigned char *p, size_t i)
{
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    return v;
}

void mk_tensor_to_f32(const struct mk_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)mk_tensor_numel(t);
    switch (t->dtype) {
    case MK_DTYPE_F32: memcpy(dst, p, n * 4); return;
    case MK_DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = mk_f16_to_f32(load_u16(p, i));
        return;
    case MK_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = mk_bf16_to_f32(load_u16(p, i));
        return;
    case MK_DTYPE_COUNT: break;
    }
    MK_ASSERTF(0, "mk_tensor_to_f32: bad dtype");
}

void mk_tensor_to_bf16(const struct mk_tensor *t, uint16_t *dst)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)mk_tensor_numel(t);
    switch (t->dtype) {
    case MK_DTYPE_BF16: memcpy(dst, p, n * 2); return;
    case MK_DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = mk_f32_to_bf16(mk_f16_to_f32(load_u16(p, i)));
        return;
    case MK_DTYPE_F32:
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            dst[i] = mk_f32_to_bf16(f);
        }
        return;
    case MK_DTYPE_COUNT: break;
    }
    MK_ASSERTF(0, "mk_tensor_to_bf16: bad dtype");
}
