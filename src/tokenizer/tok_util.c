/* Tokenizer helpers: hashing, UTF-8 scanning, the GPT-2 byte alphabet, byte buffers. */
#include "tok_internal.h"

#include <pthread.h>

#include <stdlib.h>
#include <string.h>

uint64_t mk__tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 32;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes (0..32, 127..160, 173) map in order to U+0100.. U+0143. */
static bool byte_is_printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
}

uint32_t mk__tok_byte_char(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++) k += !byte_is_printable(x);
    return 256 + k;
}

/* The k-th non-printable byte, for k = cp - 256 (load calls this per character). */
static uint8_t nonprint_byte[68];
static pthread_once_t nonprint_once = PTHREAD_ONCE_INIT;

static void nonprint_init(void)
{
    unsigned k = 0;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_is_printable(x)) nonprint_byte[k++] = (uint8_t)x;
}

int mk__tok_char_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    pthread_once(&nonprint_once, nonprint_init);
    return nonprint_byte[cp - 256];
}

/* Longest prefix of s[0..n) that is the start of a valid UTF-8 character (Unicode's
 * "maximal subpart"); *need is the full length of the character its lead byte announces,
 * or 0 when the lead byte can never start one. */
static size_t utf8_scan(const unsigned char *s, size_t n, size_t *need)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80) {
        *need = 1;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *need = 0;
        return 1;
    }
    *need = len;
    size_t k = 1;
    for (; k < len && k < n; k++) {
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    return k;
}

size_t mk__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t need, k = utf8_scan(s, n, &need);
    if (k != need) return 0;
    static const unsigned lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t c = s[0] & lead_mask[k];
    for (size_t i = 1; i < k; i++) c = (c << 6) | (s[i] & 0x3F);
    *cp = c;
    return k;
}

size_t mk__utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t mk__utf8_validate(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t need, k = utf8_scan(u + i, n - i, &need);
        if (k != need) return i;
        i += k;
    }
    return n;
}

bool mk__uni_whitespace(uint32_t cp)
{
    return (cp >= 9 && cp <= 13) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

bool mk__py_isspace(uint32_t cp)
{
    return mk__uni_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

enum mk_status mk__buf_put(struct mk_buf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return MK_OK;
}

enum mk_status mk__buf_puts(struct mk_buf *b, const char *s)
{
    return mk__buf_put(b, s, strlen(s));
}

size_t mk__buf_put_lossy(struct mk_buf *b, const char *p, size_t n, bool hold_tail,
                         enum mk_status *st)
{
    static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, run = 0; /* valid bytes [run, i) not yet copied */
    *st = MK_OK;
    while (i < n) {
        size_t need, k = utf8_scan(u + i, n - i, &need);
        if (k == need) {
            i += k;
            continue;
        }
        if (hold_tail && need && i + k == n) break; /* incomplete, may still complete */
        if ((*st = mk__buf_put(b, p + run, i - run)) != MK_OK) return run;
        if ((*st = mk__buf_put(b, replacement, 3)) != MK_OK) return i;
        i += k;
        run = i;
    }
    if ((*st = mk__buf_put(b, p + run, i - run)) != MK_OK) return run;
    return i;
}
