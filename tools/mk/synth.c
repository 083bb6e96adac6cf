/* mk synth: presets with the real releases' shapes, the config files, the tensor list,
 * the random weights and the sharded layout. See synth.h.
 *
 * Weights are a pure function of (seed, tensor name, element index): element i of a
 * tensor is a splitmix64 hash of a per-tensor key and i, mapped to a normal-like value
 * (the sum of four 16-bit uniforms, Irwin-Hall of order 4: mean 0, unit variance,
 * bounded at +-3.46). So the bytes do not depend on the thread count, the chunking or
 * the shard size, and any range of any tensor is generated independently. */
#include "synth.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* HF's initializer_range: the std of every matrix and bias; norms are 1 + this much noise,
 * so no tensor is constant. */
static const double INIT_STD = 0.02;
static const char *const TRANSFORMERS_VERSION = "4.51.0";

/* ---- presets ------------------------------------------------------------------ */

static const char *const arch_names[SYNTH_ARCH_COUNT] = {"qwen3", "llama", "qwen2", "mistral"};

const char *synth_arch_name(enum synth_arch a)
{
    return a < SYNTH_ARCH_COUNT ? arch_names[a] : "?";
}

bool synth_arch_parse(const char *s, enum synth_arch *out)
{
    for (int a = 0; a < SYNTH_ARCH_COUNT; a++)
        if (!strcmp(s, arch_names[a])) {
            *out = (enum synth_arch)a;
            return true;
        }
    return false;
}

/* Family defaults: the fields every size of a release shares. */
static struct synth_spec family_base(enum synth_arch a)
{
    struct synth_spec s = {.arch = a, .max_pos = 32768, .rope_theta = 1e6, .rms_eps = 1e-6};
    switch (a) {
    case SYNTH_QWEN3: /* Qwen3-0.6B .. 8B */
        s.qk_norm = true;
        s.max_pos = 40960;
        s.bos = 151643, s.n_eos = 1, s.eos[0] = 151645;
        break;
    case SYNTH_LLAMA: /* Llama-3.2-1B / 3B, Llama-3.1-8B: llama3 RoPE scaling */
        s.rope_theta = 500000.0, s.rms_eps = 1e-5, s.max_pos = 131072;
        s.rope_llama3 = true, s.rope_factor = 32.0, s.rope_low = 1.0, s.rope_high = 4.0;
        s.rope_orig_max_pos = 8192;
        s.bos = 128000, s.n_eos = 1, s.eos[0] = 128001;
        break;
    case SYNTH_QWEN2: /* Qwen2.5: q/k/v bias */
        s.qkv_bias = true;
        s.bos = 151643, s.n_eos = 1, s.eos[0] = 151643;
        break;
    case SYNTH_MISTRAL: /* Mistral-7B-v0.3 */
        s.rms_eps = 1e-5;
        s.bos = 1, s.n_eos = 1, s.eos[0] = 2;
        break;
    case SYNTH_ARCH_COUNT: MK_ASSERT(0);
    }
    return s;
}

struct preset {
    enum synth_arch arch;
    const char *name;
    int hidden, inter, layers, heads, kv_heads, head_dim, vocab, max_pos; /* max_pos 0: family's */
    bool tied;
    double rope_factor; /* llama: 0 keeps the family's */
};

/* "tiny" keeps the real vocabulary so the real tokenizer fits; the rest are the releases. */
static const struct preset presets[] = {
    {SYNTH_QWEN3, "tiny", 128, 384, 4, 4, 2, 32, 151936, 0, true, 0},
    {SYNTH_QWEN3, "0.6b", 1024, 3072, 28, 16, 8, 128, 151936, 0, true, 0},
    {SYNTH_QWEN3, "1.7b", 2048, 6144, 28, 16, 8, 128, 151936, 0, true, 0},
    {SYNTH_QWEN3, "4b", 2560, 9728, 36, 32, 8, 128, 151936, 0, true, 0},
    {SYNTH_QWEN3, "8b", 4096, 12288, 36, 32, 8, 128, 151936, 0, false, 0},
    {SYNTH_LLAMA, "tiny", 128, 384, 4, 4, 2, 32, 128256, 0, true, 0},
    {SYNTH_LLAMA, "1b", 2048, 8192, 16, 32, 8, 64, 128256, 0, true, 0},
    {SYNTH_LLAMA, "3b", 3072, 8192, 28, 24, 8, 128, 128256, 0, true, 0},
    {SYNTH_LLAMA, "8b", 4096, 14336, 32, 32, 8, 128, 128256, 0, false, 8.0},
    {SYNTH_QWEN2, "tiny", 128, 384, 4, 4, 2, 32, 151936, 0, true, 0},
    {SYNTH_QWEN2, "0.5b", 896, 4864, 24, 14, 2, 64, 151936, 0, true, 0},
    {SYNTH_QWEN2, "7b", 3584, 18944, 28, 28, 4, 128, 152064, 131072, false, 0},
    {SYNTH_MISTRAL, "tiny", 128, 384, 4, 4, 2, 32, 32768, 0, false, 0},
    {SYNTH_MISTRAL, "7b", 4096, 14336, 32, 32, 8, 128, 32768, 0, false, 0},
};
enum { N_PRESETS = sizeof presets / sizeof presets[0] };

bool synth_preset(enum synth_arch arch, const char *name, struct synth_spec *out)
{
    for (int i = 0; i < N_PRESETS; i++) {
        const struct preset *p = &presets[i];
        if (p->arch != arch || strcmp(p->name, name)) continue;
        struct synth_spec s = family_base(arch);
        s.preset = p->name;
        s.hidden = p->hidden, s.inter = p->inter, s.layers = p->layers;
        s.heads = p->heads, s.kv_heads = p->kv_heads, s.head_dim = p->head_dim;
        s.vocab = p->vocab, s.tied = p->tied;
        if (p->max_pos) s.max_pos = p->max_pos;
        if (p->rope_factor > 0) s.rope_factor = p->rope_factor;
        *out = s;
        return true;
    }
    return false;
}

const char *synth_preset_list(enum synth_arch arch)
{
    static char buf[SYNTH_ARCH_COUNT][128];
    char *b = buf[arch];
    b[0] = '\0';
    for (int i = 0; i < N_PRESETS; i++)
        if (presets[i].arch == arch)
            snprintf(b + strlen(b), sizeof buf[0] - strlen(b), "%s%s", b[0] ? ", " : "",
                     presets[i].name);
    return b;
}

/* ---- the tensor list ------------------------------------------------------------- */

/* One tensor to generate. The fill callback gets a pointer to it. */
struct synth_tensor {
    char name[96];
    int ndim;
    int64_t shape[2];
    float mean, std;
    uint64_t key;
    enum mk_dtype dtype;
    int shard;
};

struct tensor_list {
    struct synth_tensor *t;
    size_t n, cap;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static enum mk_status add_tensor(struct tensor_list *l, uint64_t seed, enum mk_dtype dtype,
                                 float mean, int64_t d0, int64_t d1, const char *fmt, int layer)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        struct synth_tensor *t = realloc(l->t, cap * sizeof *t);
        if (!t) return mk_error(MK_ERR_NOMEM, "mk synth: out of memory");
        l->t = t, l->cap = cap;
    }
    struct synth_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0, t->shape[1] = d1;
    t->mean = mean, t->std = (float)INIT_STD;
    t->key = mix64(seed ^ mix64(fnv1a(t->name)));
    t->dtype = dtype;
    return MK_OK;
}

/* The tensors in the order of the transformers model's state_dict. Shapes are
 * [out, in] as nn.Linear stores them. */
static enum mk_status build_tensors(const struct synth_spec *s, enum mk_dtype dt, uint64_t seed,
                                    struct tensor_list *l)
{
    const int64_t H = s->hidden, I = s->inter, D = s->head_dim, V = s->vocab;
    const int64_t Q = (int64_t)s->heads * D, KV = (int64_t)s->kv_heads * D;
    enum mk_status st = add_tensor(l, seed, dt, 0, V, H, "model.embed_tokens.weight", 0);
    for (int i = 0; i < s->layers && st == MK_OK; i++) {
        struct { bool on; float mean; int64_t d0, d1; const char *fmt; } w[] = {
            {true, 1, H, 0, "model.layers.%d.input_layernorm.weight"},
            {true, 0, Q, H, "model.layers.%d.self_attn.q_proj.weight"},
            {s->qkv_bias, 0, Q, 0, "model.layers.%d.self_attn.q_proj.bias"},
            {true, 0, KV, H, "model.layers.%d.self_attn.k_proj.weight"},
            {s->qkv_bias, 0, KV, 0, "model.layers.%d.self_attn.k_proj.bias"},
            {true, 0, KV, H, "model.layers.%d.self_attn.v_proj.weight"},
            {s->qkv_bias, 0, KV, 0, "model.layers.%d.self_attn.v_proj.bias"},
            {true, 0, H, Q, "model.layers.%d.self_attn.o_proj.weight"},
            {s->o_bias, 0, H, 0, "model.layers.%d.self_attn.o_proj.bias"},
            {s->qk_norm, 1, D, 0, "model.layers.%d.self_attn.q_norm.weight"},
            {s->qk_norm, 1, D, 0, "model.layers.%d.self_attn.k_norm.weight"},
            {true, 1, H, 0, "model.layers.%d.post_attention_layernorm.weight"},
            {true, 0, I, H, "model.layers.%d.mlp.gate_proj.weight"},
            {s->mlp_bias, 0, I, 0, "model.layers.%d.mlp.gate_proj.bias"},
            {true, 0, I, H, "model.layers.%d.mlp.up_proj.weight"},
            {s->mlp_bias, 0, I, 0, "model.layers.%d.mlp.up_proj.bias"},
            {true, 0, H, I, "model.layers.%d.mlp.down_proj.weight"},
            {s->mlp_bias, 0, H, 0, "model.layers.%d.mlp.down_proj.bias"},
        };
        for (size_t k = 0; k < sizeof w / sizeof w[0] && st == MK_OK; k++)
            if (w[k].on) st = add_tensor(l, seed, dt, w[k].mean, w[k].d0, w[k].d1, w[k].fmt, i);
    }
    if (st == MK_OK) st = add_tensor(l, seed, dt, 1, H, 0, "model.norm.weight", 0);
    if (st == MK_OK && !s->tied) st = add_tensor(l, seed, dt, 0, V, H, "lm_head.weight", 0);
    return st;
}

int64_t synth_params(const struct synth_spec *s)
{
    const int64_t H = s->hidden, I = s->inter, D = s->head_dim, V = s->vocab;
    const int64_t Q = (int64_t)s->heads * D, KV = (int64_t)s->kv_heads * D;
    int64_t layer = 2 * H + Q * H + 2 * KV * H + H * Q + 3 * I * H;
    if (s->qkv_bias) layer += Q + 2 * KV;
    if (s->o_bias) layer += H;
    if (s->qk_norm) layer += 2 * D;
    if (s->mlp_bias) layer += 2 * I + H;
    return V * H * (s->tied ? 1 : 2) + H + layer * s->layers;
}

/* ---- the random values ----------------------------------------------------------- */

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest even; values here are finite */
    return (uint16_t)(x >> 16);
}

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
    if (a < 0x38800000u) {                        /* below 2^-14: subnormal half */
        float v;
        memcpy(&v, &a, 4);
        return sign | (uint16_t)nearbyintf(v * 16777216.0f);
    }
    a -= 0x38000000u;                             /* rebias the exponent 127 -> 15 */
    a += 0xfffu + ((a >> 13) & 1u);
    return sign | (uint16_t)(a >> 13);
}

/* 1 / the std of a sum of four uniforms on [0, 65535]. */
static const float IRWIN_HALL4_INV_STD = 1.0f / 37837.23f;

static enum mk_status fill_tensor(void *ctx, size_t index, uint64_t first, uint64_t count,
                                  void *dst)
{
    const struct synth_tensor *t = ctx;
    const float scale = t->std * IRWIN_HALL4_INV_STD;
    const float base = t->mean - 131070.0f * scale;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t h = mix64(t->key + (first + i) * 0x9e3779b97f4a7c15ull);
        uint32_t sum = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) +
                       (uint32_t)((h >> 32) & 0xffff) + (uint32_t)(h >> 48);
        float v = base + (float)sum * scale;
        switch (t->dtype) {
        case MK_DTYPE_BF16: ((uint16_t *)dst)[i] = f32_to_bf16(v); break;
        case MK_DTYPE_F16: ((uint16_t *)dst)[i] = f32_to_f16(v); break;
        case MK_DTYPE_F32: ((float *)dst)[i] = v; break;
        case MK_DTYPE_COUNT: MK_ASSERT(0);
        }
    }
    return MK_OK;
}

/* ---- sharding and writing ---------------------------------------------------------- */

static uint64_t tensor_bytes(const struct synth_tensor *t)
{
    uint64_t n = t->dtype == MK_DTYPE_F32 ? 4 : 2;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return n;
}

/* huggingface_hub's split: walk the state_dict in order and open a new shard when the
 * next tensor would overflow the current (non-empty) one. Returns the shard count. */
static int assign_shards(struct tensor_list *l, uint64_t shard_bytes)
{
    int shard = 0;
    uint64_t used = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t b = tensor_bytes(&l->t[i]);
        if (used > 0 && used + b > shard_bytes) shard++, used = 0;
        l->t[i].shard = shard;
        used += b;
    }
    return shard + 1;
}

static int entry_name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mk_safetensors_entry *)a)->name,
                  ((const struct mk_safetensors_entry *)b)->name);
}

static void shard_file_name(char *buf, size_t cap, int shard, int n_shards)
{
    if (n_shards == 1)
        snprintf(buf, cap, "model.safetensors");
    else
        snprintf(buf, cap, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
}

/* One shard: its tensors sorted by name, as safetensors' save_file orders them. */
static enum mk_status write_shard(const struct tensor_list *l, int shard, int n_shards,
                                  const char *dir, int threads)
{
    struct mk_safetensors_entry *e = calloc(l->n, sizeof *e);
    if (!e) return mk_error(MK_ERR_NOMEM, "mk synth: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct synth_tensor *t = &l->t[i];
        if (t->shard != shard) continue;
        e[n] = (struct mk_safetensors_entry){.name = t->name, .dtype = t->dtype,
                                             .ndim = t->ndim, .fill = fill_tensor,
                                             .fill_ctx = (void *)t};
        memcpy(e[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    qsort(e, n, sizeof *e, entry_name_cmp);
    char file[64], path[4096];
    shard_file_name(file, sizeof file, shard, n_shards);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    enum mk_status s = mk_safetensors_write(path, e, n, threads);
    free(e);
    return s;
}

/* Shards are written concurrently: buffered writes to one file serialize on its inode
 * lock in the kernel (ext4, xfs), so a big set written one file at a time leaves most
 * cores waiting. Up to `cores` shards are in flight, and the cores are divided among
 * them. */
struct shard_pool {
    const struct tensor_list *l;
    const char *dir;
    int n_shards, threads_each;
    atomic_int next;
    atomic_bool failed;
    pthread_mutex_t lock;
    enum mk_status status; /* first failure, under lock */
    char msg[1024];
};

static void *shard_worker(void *arg)
{
    struct shard_pool *p = arg;
    while (!atomic_load(&p->failed)) {
        int k = atomic_fetch_add(&p->next, 1);
        if (k >= p->n_shards) break;
        enum mk_status s = write_shard(p->l, k, p->n_shards, p->dir, p->threads_each);
        if (s != MK_OK) {
            pthread_mutex_lock(&p->lock);
            if (!atomic_load(&p->failed)) {
                p->status = s;
                snprintf(p->msg, sizeof p->msg, "%s", mk_errmsg()); /* per-thread message */
                atomic_store(&p->failed, true);
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

static enum mk_status write_shards(const struct tensor_list *l, int n_shards,
                                   const struct synth_opts *o)
{
    enum { MAX_WORKERS = 256 };
    long cores = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int workers = (int)(cores < n_shards ? cores : n_shards);
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    struct shard_pool p = {.l = l, .dir = o->out_dir, .n_shards = n_shards,
                           .threads_each = (int)(cores / workers), .status = MK_OK};
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, false);
    pthread_mutex_init(&p.lock, NULL);
    pthread_t tid[MAX_WORKERS];
    int started = 0;
    for (int t = 1; t < workers; t++, started++) /* a failed create only lowers parallelism */
        if (pthread_create(&tid[started], NULL, shard_worker, &p) != 0) break;
    shard_worker(&p);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&p.lock);
    return atomic_load(&p.failed) ? mk_error(p.status, "%s", p.msg) : MK_OK;
}

static enum mk_status write_index(const struct tensor_list *l, int n_shards, const char *dir)
{
    const char **names = calloc(l->n, sizeof *names), **files = calloc(l->n, sizeof *files);
    char (*fnames)[64] = calloc((size_t)n_shards, sizeof *fnames);
    enum mk_status s = MK_OK;
    if (!names || !files || !fnames) {
        s = mk_error(MK_ERR_NOMEM, "mk synth: out of memory");
        goto out;
    }
    uint64_t total = 0;
    for (int k = 0; k < n_shards; k++) shard_file_name(fnames[k], sizeof fnames[k], k, n_shards);
    for (size_t i = 0; i < l->n; i++) {
        names[i] = l->t[i].name;
        files[i] = fnames[l->t[i].shard];
        total += tensor_bytes(&l->t[i]);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    s = mk_safetensors_write_index(path, total, names, files, l->n);
out:
    free(names), free(files), free(fnames);
    return s;
}

/* ---- files and directories ---------------------------------------------------------- */

static enum mk_status make_dirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return mk_error(MK_ERR_ARG, "mk synth: --out path too long");
    for (char *p = path + 1;; p++) {
        bool end = *p == '\0';
        if (*p != '/' && !end) continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return mk_error(MK_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
        if (end) break;
        *p = '/';
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mk_error(MK_ERR_IO, "%s: not a directory", dir);
    return MK_OK;
}

/* Weights of an earlier run in DIR (another shard count) would sit beside the new ones
 * and confuse a loader: remove model.safetensors, model-*-of-*.safetensors, the index,
 * and config.json, which is written last and so marks a complete directory. */
static enum mk_status remove_old_checkpoint(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return mk_error(MK_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    enum mk_status s = MK_OK;
    struct dirent *de;
    while ((de = readdir(d)) && s == MK_OK) {
        const char *n = de->d_name;
        unsigned a, b;
        char tail[32];
        /* also the .partial files a killed writer leaves (see mk_safetensors_write) */
        bool shard = sscanf(n, "model-%5u-of-%5u.%31s", &a, &b, tail) == 3 &&
                     (!strcmp(tail, "safetensors") || !strcmp(tail, "safetensors.partial"));
        if (!shard && strcmp(n, "model.safetensors") && strcmp(n, "model.safetensors.partial") &&
            strcmp(n, "model.safetensors.index.json") && strcmp(n, "config.json"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (unlink(path) != 0)
            s = mk_error(MK_ERR_IO, "%s: cannot remove old weights: %s", path, strerror(errno));
    }
    closedir(d);
    return s;
}

static enum mk_status write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return mk_error(MK_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fputs(text, f) >= 0;
    if (fclose(f) != 0 || !ok)
        return mk_error(MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MK_OK;
}

static enum mk_status copy_file(const char *src, const char *dst)
{
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return MK_OK; /* --tokenizer DIR --out DIR: already in place */
    FILE *in = fopen(src, "rb");
    if (!in) return mk_error(MK_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return mk_error(MK_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    }
    enum mk_status s = MK_OK;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            s = mk_error(MK_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
            break;
        }
    if (s == MK_OK && ferror(in)) s = mk_error(MK_ERR_IO, "%s: read failed", src);
    fclose(in);
    if (fclose(out) != 0 && s == MK_OK)
        s = mk_error(MK_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
    return s;
}

/* ---- config files --------------------------------------------------------------- */

static const char *torch_dtype_name(enum mk_dtype t)
{
    return t == MK_DTYPE_F32 ? "float32" : t == MK_DTYPE_F16 ? "float16" : "bfloat16";
}

static json_t *eos_json(const int *ids, int n)
{
    if (n == 1) return json_integer(ids[0]);
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static const char *const arch_class[SYNTH_ARCH_COUNT] = {
    "Qwen3ForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};

/* config.json as the release has it: the fields of its transformers config class. */
static json_t *config_json(const struct synth_spec *s, enum mk_dtype dt)
{
    json_t *c = json_object();
    json_t *archs = json_array();
    json_array_append_new(archs, json_string(arch_class[s->arch]));
    json_object_set_new(c, "architectures", archs);
    json_object_set_new(c, "model_type", json_string(synth_arch_name(s->arch)));
    json_object_set_new(c, "attention_dropout", json_real(0.0));
    json_object_set_new(c, "bos_token_id", json_integer(s->bos));
    json_object_set_new(c, "eos_token_id", eos_json(s->eos, s->n_eos));
    json_object_set_new(c, "head_dim", json_integer(s->head_dim));
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "hidden_size", json_integer(s->hidden));
    json_object_set_new(c, "initializer_range", json_real(INIT_STD));
    json_object_set_new(c, "intermediate_size", json_integer(s->inter));
    json_object_set_new(c, "max_position_embeddings", json_integer(s->max_pos));
    json_object_set_new(c, "num_attention_heads", json_integer(s->heads));
    json_object_set_new(c, "num_hidden_layers", json_integer(s->layers));
    json_object_set_new(c, "num_key_value_heads", json_integer(s->kv_heads));
    json_object_set_new(c, "rms_norm_eps", json_real(s->rms_eps));
    json_object_set_new(c, "rope_theta", json_real(s->rope_theta));
    json_object_set_new(c, "tie_word_embeddings", json_boolean(s->tied));
    json_object_set_new(c, "torch_dtype", json_string(torch_dtype_name(dt)));
    json_object_set_new(c, "transformers_version", json_string(TRANSFORMERS_VERSION));
    json_object_set_new(c, "use_cache", json_true());
    json_object_set_new(c, "vocab_size", json_integer(s->vocab));
    if (s->arch == SYNTH_LLAMA || s->arch == SYNTH_QWEN3)
        json_object_set_new(c, "attention_bias", json_boolean(s->o_bias));
    if (s->arch == SYNTH_LLAMA) {
        json_object_set_new(c, "mlp_bias", json_boolean(s->mlp_bias));
        json_object_set_new(c, "pretraining_tp", json_integer(1));
    }
    if (s->rope_llama3) {
        json_t *r = json_object();
        json_object_set_new(r, "factor", json_real(s->rope_factor));
        json_object_set_new(r, "high_freq_factor", json_real(s->rope_high));
        json_object_set_new(r, "low_freq_factor", json_real(s->rope_low));
        json_object_set_new(r, "original_max_position_embeddings",
                            json_integer(s->rope_orig_max_pos));
        json_object_set_new(r, "rope_type", json_string("llama3"));
        json_object_set_new(c, "rope_scaling", r);
    } else if (s->arch != SYNTH_MISTRAL) {
        json_object_set_new(c, "rope_scaling", json_null());
    }
    if (s->arch == SYNTH_QWEN2 || s->arch == SYNTH_QWEN3) {
        json_object_set_new(c, "max_window_layers", json_integer(s->layers));
        json_object_set_new(c, "use_sliding_window", json_false());
    }
    if (s->arch == SYNTH_QWEN2)
        json_object_set_new(c, "sliding_window", json_integer(s->max_pos));
    else if (s->arch != SYNTH_LLAMA)
        json_object_set_new(c, "sliding_window", json_null());
    return c;
}

/* generation_config.json: the release's sampling defaults for the presets; only the
 * token ids for a --config checkpoint, whose release we do not know. */
static json_t *gen_config_json(const struct synth_spec *s)
{
    json_t *g = json_object();
    json_object_set_new(g, "bos_token_id", json_integer(s->bos));
    json_object_set_new(g, "eos_token_id", eos_json(s->eos, s->n_eos));
    json_object_set_new(g, "transformers_version", json_string(TRANSFORMERS_VERSION));
    if (!s->preset) return g;
    switch (s->arch) {
    case SYNTH_QWEN3: { /* Qwen3: chat end <|im_end|> and <|endoftext|> */
        int eos[2] = {151645, 151643};
        json_object_set_new(g, "eos_token_id", eos_json(eos, 2));
        json_object_set_new(g, "pad_token_id", json_integer(151643));
        json_object_set_new(g, "do_sample", json_true());
        json_object_set_new(g, "temperature", json_real(0.6));
        json_object_set_new(g, "top_k", json_integer(20));
        json_object_set_new(g, "top_p", json_real(0.95));
        break;
    }
    case SYNTH_LLAMA:
        json_object_set_new(g, "do_sample", json_true());
        json_object_set_new(g, "temperature", json_real(0.6));
        json_object_set_new(g, "top_p", json_real(0.9));
        break;
    case SYNTH_QWEN2:
        json_object_set_new(g, "do_sample", json_false());
        json_object_set_new(g, "max_new_tokens", json_integer(2048));
        break;
    case SYNTH_MISTRAL: break;
    case SYNTH_ARCH_COUNT: MK_ASSERT(0);
    }
    return g;
}

/* Keys sorted, two-space indent, trailing newline: transformers' to_json_string. Reals
 * with 15 significant digits print the config's decimals as written (1e-06, 0.02).
 * Takes the reference to v. */
static enum mk_status json_text(json_t *v, size_t flags, char **out)
{
    char *text = v ? json_dumps(v, JSON_INDENT(2) | flags) : NULL;
    json_decref(v);
    size_t n = text ? strlen(text) : 0;
    char *t2 = text ? realloc(text, n + 2) : NULL;
    if (!t2) {
        free(text);
        return mk_error(MK_ERR_NOMEM, "mk synth: out of memory");
    }
    memcpy(t2 + n, "\n", 2);
    *out = t2;
    return MK_OK;
}

/* The text of config.json, made before anything in DIR changes (--config may name
 * DIR/config.json itself). A given config is kept byte for byte unless --dtype changes
 * its dtype. */
static enum mk_status config_text(const struct synth_spec *s, const struct synth_opts *o,
                                  char **out)
{
    if (!o->config_path)
        return json_text(config_json(s, o->dtype), JSON_SORT_KEYS | JSON_REAL_PRECISION(15), out);
    json_error_t err;
    json_t *c = json_load_file(o->config_path, 0, &err);
    if (!c) return mk_error(MK_ERR_FORMAT, "%s: %s", o->config_path, err.text);
    const char *key = json_object_get(c, "dtype") ? "dtype" : "torch_dtype";
    json_t *cur = json_object_get(c, key);
    if (json_is_string(cur) && !strcmp(json_string_value(cur), torch_dtype_name(o->dtype))) {
        json_decref(c);
        size_t len;
        return mk_read_file(o->config_path, 1 << 20, out, &len);
    }
    json_object_set_new(c, key, json_string(torch_dtype_name(o->dtype)));
    return json_text(c, JSON_PRESERVE_ORDER, out);
}

/* ---- tokenizer ------------------------------------------------------------------- */

/* Largest token id of a tokenizer.json: model.vocab ({token: id} for BPE/WordPiece,
 * [[token, score], ...] for Unigram) and added_tokens[].id. -1 when it has none. */
static enum mk_status tokenizer_max_id(const char *path, int64_t *out)
{
    json_error_t err;
    json_t *t = json_load_file(path, 0, &err);
    if (!t) return mk_error(MK_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    int64_t max = -1;
    json_t *vocab = json_object_get(json_object_get(t, "model"), "vocab");
    const char *key;
    json_t *v;
    if (json_is_object(vocab)) {
        json_object_foreach(vocab, key, v)
            if (json_is_integer(v) && json_integer_value(v) > max) max = json_integer_value(v);
    } else if (json_is_array(vocab)) {
        max = (int64_t)json_array_size(vocab) - 1;
    }
    size_t i;
    json_array_foreach(json_object_get(t, "added_tokens"), i, v) {
        json_t *id = json_object_get(v, "id");
        if (json_is_integer(id) && json_integer_value(id) > max) max = json_integer_value(id);
    }
    json_decref(t);
    *out = max;
    return MK_OK;
}

static enum mk_status check_tokenizer(const struct synth_spec *s, const struct synth_opts *o)
{
    char src[4096];
    snprintf(src, sizeof src, "%s/tokenizer.json", o->tokenizer_dir);
    int64_t max_id = -1;
    enum mk_status st = tokenizer_max_id(src, &max_id);
    if (st == MK_OK && max_id >= s->vocab)
        st = mk_error(MK_ERR_ARG, "%s: token id %lld does not fit the model: expected ids < "
                      "vocab_size %d", src, (long long)max_id, s->vocab);
    return st;
}

static enum mk_status copy_tokenizer(const struct synth_opts *o)
{
    char src[4096], dst[4096];
    const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    enum mk_status st = MK_OK;
    for (size_t i = 0; i < 2 && st == MK_OK; i++) {
        snprintf(src, sizeof src, "%s/%s", o->tokenizer_dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", o->out_dir, files[i]);
        if (i > 0 && access(src, F_OK) != 0) break; /* tokenizer_config.json is optional */
        st = copy_file(src, dst);
    }
    return st;
}

/* ---- reading a config.json -------------------------------------------------------- */

static enum mk_status cfg_int(json_t *c, const char *path, const char *field, int dflt,
                              int lo, int hi, int *out)
{
    json_t *v = json_object_get(c, field);
    if (!v || json_is_null(v)) {
        if (dflt < lo)
            return mk_error(MK_ERR_FORMAT, "%s: %s: missing", path, field);
        *out = dflt;
        return MK_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return mk_error(MK_ERR_FORMAT, "%s: %s: expected an integer in [%d, %d]", path, field,
                        lo, hi);
    *out = (int)json_integer_value(v);
    return MK_OK;
}

static bool cfg_bool(json_t *c, const char *field, bool dflt)
{
    json_t *v = json_object_get(c, field);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static double cfg_num(json_t *c, const char *field, double dflt)
{
    json_t *v = json_object_get(c, field);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static enum mk_status cfg_dtype(json_t *c, const char *path, enum mk_dtype *out)
{
    json_t *v = json_object_get(c, "dtype");
    if (!v) v = json_object_get(c, "torch_dtype");
    *out = MK_DTYPE_BF16;
    if (!v || json_is_null(v)) return MK_OK;
    const char *n = json_string_value(v);
    for (int t = 0; n && t < MK_DTYPE_COUNT; t++)
        if (!strcmp(n, torch_dtype_name((enum mk_dtype)t))) {
            *out = (enum mk_dtype)t;
            return MK_OK;
        }
    return mk_error(MK_ERR_UNSUPPORTED, "%s: torch_dtype: expected bfloat16, float16 or "
                    "float32, got %s", path, n ? n : "a non-string");
}

static enum mk_status spec_sizes(json_t *c, const char *path, struct synth_spec *s)
{
    enum mk_status st;
    if ((st = cfg_int(c, path, "hidden_size", -1, 1, 1 << 16, &s->hidden)) ||
        (st = cfg_int(c, path, "intermediate_size", -1, 1, 1 << 18, &s->inter)) ||
        (st = cfg_int(c, path, "num_hidden_layers", -1, 1, 1024, &s->layers)) ||
        (st = cfg_int(c, path, "num_attention_heads", -1, 1, 1024, &s->heads)) ||
        (st = cfg_int(c, path, "num_key_value_heads", s->heads, 1, s->heads, &s->kv_heads)) ||
        (st = cfg_int(c, path, "head_dim", s->hidden / s->heads, 1, 1024, &s->head_dim)) ||
        (st = cfg_int(c, path, "vocab_size", -1, 1, 1 << 24, &s->vocab)) ||
        (st = cfg_int(c, path, "max_position_embeddings", 4096, 1, 1 << 24, &s->max_pos)) ||
        (st = cfg_int(c, path, "bos_token_id", 0, 0, s->vocab - 1, &s->bos)))
        return st;
    if (s->heads % s->kv_heads)
        return mk_error(MK_ERR_FORMAT, "%s: num_key_value_heads: expected a divisor of "
                        "num_attention_heads %d, got %d", path, s->heads, s->kv_heads);
    json_t *eos = json_object_get(c, "eos_token_id");
    s->n_eos = 0;
    size_t i;
    json_t *v;
    if (json_is_integer(eos)) s->eos[s->n_eos++] = (int)json_integer_value(eos);
    json_array_foreach(eos, i, v) if (json_is_integer(v) && s->n_eos < SYNTH_MAX_EOS)
        s->eos[s->n_eos++] = (int)json_integer_value(v);
    for (int k = 0; k < s->n_eos; k++)
        if (s->eos[k] < 0 || s->eos[k] >= s->vocab)
            return mk_error(MK_ERR_FORMAT, "%s: eos_token_id: expected ids < vocab_size %d, "
                            "got %d", path, s->vocab, s->eos[k]);
    return MK_OK;
}

enum mk_status synth_spec_from_config(const char *path, struct synth_spec *out,
                                      enum mk_dtype *dtype)
{
    json_error_t err;
    json_t *c = json_load_file(path, 0, &err);
    if (!c) return mk_error(MK_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    enum mk_status st = MK_OK;
    const char *mt = json_string_value(json_object_get(c, "model_type"));
    enum synth_arch a;
    if (!mt || !synth_arch_parse(mt, &a)) {
        st = mk_error(MK_ERR_UNSUPPORTED, "%s: model_type: expected qwen3, llama, qwen2 or "
                      "mistral, got %s", path, mt ? mt : "nothing");
        goto out;
    }
    struct synth_spec s = family_base(a);
    if ((st = spec_sizes(c, path, &s)) != MK_OK || (st = cfg_dtype(c, path, dtype)) != MK_OK)
        goto out;
    s.tied = cfg_bool(c, "tie_word_embeddings", false);
    s.rms_eps = cfg_num(c, "rms_norm_eps", s.rms_eps);
    s.rope_theta = cfg_num(c, "rope_theta", s.rope_theta);
    if (a == SYNTH_LLAMA || a == SYNTH_QWEN3) {
        s.o_bias = cfg_bool(c, "attention_bias", false);
        s.qkv_bias = s.o_bias;
    }
    if (a == SYNTH_LLAMA) s.mlp_bias = cfg_bool(c, "mlp_bias", false);
    json_t *rs = json_object_get(c, "rope_scaling");
    const char *rt = json_string_value(json_object_get(rs, "rope_type"));
    s.rope_llama3 = rt && !strcmp(rt, "llama3");
    *out = s;
out:
    json_decref(c);
    return st;
}

/* ---- the whole directory -------------------------------------------------------------- */

enum mk_status synth_write(const struct synth_spec *s, const struct synth_opts *o,
                           uint64_t *out_bytes, int *out_files)
{
    struct tensor_list l = {0};
    char *config = NULL, *gen = NULL;
    enum mk_status st;
    /* Everything that can be refused is checked before DIR changes or gigabytes are
     * written: the tokenizer's ids, the config texts. */
    if ((st = config_text(s, o, &config)) != MK_OK ||
        (st = json_text(gen_config_json(s), JSON_SORT_KEYS | JSON_REAL_PRECISION(15), &gen)) != MK_OK ||
        (st = make_dirs(o->out_dir)) != MK_OK ||
        (o->tokenizer_dir && (st = check_tokenizer(s, o)) != MK_OK))
        goto out;
    /* config.json goes first and comes back last: a directory with one is complete
     * (scripts/run.sh relies on it). */
    if ((st = remove_old_checkpoint(o->out_dir)) != MK_OK ||
        (o->tokenizer_dir && (st = copy_tokenizer(o)) != MK_OK) ||
        (st = build_tensors(s, o->dtype, o->seed, &l)) != MK_OK)
        goto out;
    int n_shards = assign_shards(&l, o->shard_bytes);
    st = write_shards(&l, n_shards, o);
    if (st == MK_OK && n_shards > 1) st = write_index(&l, n_shards, o->out_dir);
    if (st == MK_OK) st = write_text(o->out_dir, "generation_config.json", gen);
    if (st == MK_OK) st = write_text(o->out_dir, "config.json", config);
    if (st == MK_OK) {
        uint64_t total = 0;
        for (size_t i = 0; i < l.n; i++) total += tensor_bytes(&l.t[i]);
        *out_bytes = total;
        *out_files = n_shards;
    }
out:
    free(l.t);
    free(config);
    free(gen);
    return st;
}
