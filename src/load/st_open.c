/* Opening a safetensors checkpoint: one file, or a shard set through its index.
 *
 * Each file is mapped read-only (MAP_PRIVATE, never written) and its header parsed in
 * place; tensor data pointers point into the mappings (zero copy). The tensors of all
 * files are gathered into one array sorted by name, so lookups are a binary search and
 * a name present in two shards shows up as two neighbours. Caveat: a file truncated by
 * someone else while mapped raises SIGBUS on access; checkpoints are assumed immutable
 * while loaded. */
#include "mk/load.h"

#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MK_INDEX_FILE_MAX = 64 << 20 };

struct st_file {
    char *path;
    void *map;
    size_t len;
};

struct mk_safetensors {
    struct st_file *files;
    size_t n_files;
    struct mk_tensor *tensors; /* sorted by name; names owned */
    size_t count;
};

static enum mk_status map_file(const char *path, struct st_file *f)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mk_error(MK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    enum mk_status s = MK_OK;
    if (fstat(fd, &st) != 0)
        s = mk_error(MK_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = mk_error(MK_ERR_IO, "%s: not a regular file", path);
    else if (st.st_size < 8)
        s = mk_error(MK_ERR_FORMAT, "%s: file is %lld bytes, too short for the 8-byte header length",
                     path, (long long)st.st_size);
    if (s == MK_OK) {
        f->len = (size_t)st.st_size;
        f->map = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            s = mk_error(MK_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, f->len, strerror(errno));
        }
    }
    close(fd);
    if (s == MK_OK && !(f->path = strdup(path))) s = mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    return s;
}

void mk_safetensors_close(struct mk_safetensors *st)
{
    if (!st) return;
    mk_safetensors_free_tensors(st->tensors, st->count);
    for (size_t i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].len);
        free(st->files[i].path);
    }
    free(st->files);
    free(st);
}

/* Map and parse `path` as file number `shard`; append its tensors to st->tensors. */
static enum mk_status add_file(struct mk_safetensors *st, const char *path, int shard)
{
    struct st_file *f = &st->files[shard];
    st->n_files = (size_t)shard + 1; /* close() unmaps whatever map_file got to */
    enum mk_status s = map_file(path, f);
    if (s != MK_OK) return s;
    struct mk_tensor *t;
    size_t n;
    s = mk_safetensors_parse(f->map, f->len, path, &t, &n);
    if (s != MK_OK) return s;
    struct mk_tensor *all = realloc(st->tensors, (st->count + n + 1) * sizeof *all);
    if (!all) {
        mk_safetensors_free_tensors(t, n);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    }
    st->tensors = all;
    for (size_t i = 0; i < n; i++) {
        t[i].shard = shard;
        all[st->count++] = t[i];
    }
    free(t); /* the names moved into st->tensors */
    return MK_OK;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct mk_tensor *)a)->name, ((const struct mk_tensor *)b)->name);
}

static enum mk_status sort_and_check_unique(struct mk_safetensors *st)
{
    if (st->count) qsort(st->tensors, st->count, sizeof *st->tensors, cmp_name);
    for (size_t i = 1; i < st->count; i++)
        if (!strcmp(st->tensors[i - 1].name, st->tensors[i].name))
            return mk_error(MK_ERR_FORMAT, "tensor %s is in both %s and %s", st->tensors[i].name,
                            st->files[st->tensors[i - 1].shard].path,
                            st->files[st->tensors[i].shard].path);
    return MK_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

struct listed {
    const char *name;
    int file;
};

static int cmp_listed(const void *a, const void *b)
{
    return strcmp(((const struct listed *)a)->name, ((const struct listed *)b)->name);
}

/* Every tensor of the shards is listed by the index under its own shard, and every
 * tensor the index lists is in that shard. Both directions by binary search, so a
 * hostile index with a million names costs n log n, not n^2. */
static enum mk_status check_index_agrees(const struct mk_safetensors *st,
                                         const struct mk_st_index *ix, const char *ipath)
{
    struct listed *l = malloc(ix->n_tensors * sizeof *l);
    if (!l) return mk_error(MK_ERR_NOMEM, "%s: out of memory", ipath);
    for (size_t j = 0; j < ix->n_tensors; j++) l[j] = (struct listed){ix->names[j], ix->file_of[j]};
    qsort(l, ix->n_tensors, sizeof *l, cmp_listed);
    enum mk_status s = MK_OK;
    for (size_t i = 0; s == MK_OK && i < st->count; i++) {
        const struct mk_tensor *t = &st->tensors[i];
        struct listed key = {t->name, 0};
        if (!bsearch(&key, l, ix->n_tensors, sizeof *l, cmp_listed))
            s = mk_error(MK_ERR_FORMAT, "%s: tensor %s is not in the weight_map of %s",
                         st->files[t->shard].path, t->name, ipath);
    }
    free(l);
    for (size_t j = 0; s == MK_OK && j < ix->n_tensors; j++) {
        const struct mk_tensor *t = mk_safetensors_find(st, ix->names[j]);
        if (!t || t->shard != ix->file_of[j])
            s = mk_error(MK_ERR_FORMAT, "%s: weight_map: tensor %s: not found in %s%s%s%s", ipath,
                         ix->names[j], st->files[ix->file_of[j]].path, t ? " (it is in " : "",
                         t ? st->files[t->shard].path : "", t ? ")" : "");
    }
    return s;
}

static enum mk_status open_index(struct mk_safetensors *st, const char *ipath)
{
    char *text;
    size_t len;
    enum mk_status s = mk_read_file(ipath, MK_INDEX_FILE_MAX, &text, &len);
    if (s != MK_OK) return s;
    struct mk_st_index ix;
    s = mk_safetensors_index_parse(text, len, ipath, &ix);
    free(text);
    if (s != MK_OK) return s;
    const char *slash = strrchr(ipath, '/');
    int dir_len = slash ? (int)(slash - ipath) : 1;
    const char *dir = slash ? ipath : ".";
    st->files = calloc(ix.n_files, sizeof *st->files);
    if (!st->files) s = mk_error(MK_ERR_NOMEM, "%s: out of memory", ipath);
    for (size_t i = 0; s == MK_OK && i < ix.n_files; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%.*s/%s", dir_len, dir, ix.files[i]) >= (int)sizeof path)
            s = mk_error(MK_ERR_LIMIT, "%s: shard path too long", ipath);
        else
            s = add_file(st, path, (int)i);
    }
    if (s == MK_OK) s = sort_and_check_unique(st);
    if (s == MK_OK) s = check_index_agrees(st, &ix, ipath);
    mk_safetensors_index_free(&ix);
    return s;
}

enum mk_status mk_safetensors_open(const char *path, struct mk_safetensors **out)
{
    struct mk_safetensors *st = calloc(1, sizeof *st);
    if (!st) return mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    enum mk_status s;
    if (ends_with(path, ".json")) {
        s = open_index(st, path);
    } else {
        st->files = calloc(1, sizeof *st->files);
        s = st->files ? add_file(st, path, 0) : mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
        if (s == MK_OK) s = sort_and_check_unique(st);
    }
    if (s != MK_OK) {
        mk_safetensors_close(st);
        return s;
    }
    *out = st;
    return MK_OK;
}

size_t mk_safetensors_count(const struct mk_safetensors *st) { return st->count; }

const struct mk_tensor *mk_safetensors_at(const struct mk_safetensors *st, size_t i)
{
    MK_ASSERT(i < st->count);
    return &st->tensors[i];
}

const struct mk_tensor *mk_safetensors_find(const struct mk_safetensors *st, const char *name)
{
    struct mk_tensor key = {.name = name};
    if (!st->count) return NULL;
    return bsearch(&key, st->tensors, st->count, sizeof key, cmp_name);
}

size_t mk_safetensors_nfiles(const struct mk_safetensors *st) { return st->n_files; }

const char *mk_safetensors_file(const struct mk_safetensors *st, int shard)
{
    MK_ASSERT(shard >= 0 && (size_t)shard < st->n_files);
    return st->files[shard].path;
}

uint64_t mk_safetensors_data_bytes(const struct mk_safetensors *st)
{
    uint64_t n = 0;
    for (size_t i = 0; i < st->count; i++) n += st->tensors[i].nbytes;
    return n;
}

/* Sum of 8-byte words (memcpy: data has the file's alignment), then the tail bytes. */
static uint64_t sum_bytes(const unsigned char *p, size_t n)
{
    uint64_t a = 0, b = 0, w0, w1;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + i + 8, 8);
        a += w0;
        b ^= w1;
    }
    for (; i < n; i++) a += p[i];
    return a ^ b;
}

uint64_t mk_safetensors_touch(const struct mk_safetensors *st)
{
    /* start readahead of every file at once (matters when not in the page cache yet) */
    for (size_t i = 0; i < st->n_files; i++) madvise(st->files[i].map, st->files[i].len, MADV_WILLNEED);
    uint64_t h = 0;
    for (size_t i = 0; i < st->count; i++)
        h = h * 31 + sum_bytes(st->tensors[i].data, st->tensors[i].nbytes);
    return h;
}
