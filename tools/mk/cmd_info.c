/* mk info — load a checkpoint directory, validate it completely, and describe it:
 * family and sizes, exact parameter count, bytes per dtype, tied or not, the bytes one
 * batch-1 decode step must stream (the numerator of the bandwidth floor), and the load
 * time; --touch also reads every weight byte once and reports the read rate. */
#include "cli.h"
#include "mk/load.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: mk info DIR [--json] [--touch]\n"
    "  Load and validate the checkpoint in DIR (config.json, generation_config.json,\n"
    "  model.safetensors or model.safetensors.index.json + shards) and describe it.\n"
    "  --json   print one JSON object (family, params, step_bytes, ...)\n"
    "  --touch  read every weight byte once; report bytes, seconds and GB/s\n"
    "  Exit: 0 ok, 1 bad checkpoint (message on stderr), 2 bad arguments.\n";

struct info {
    const struct mk_model *m;
    uint64_t dtype_bytes[MK_DTYPE_COUNT];
    bool touched;
    uint64_t touch_bytes;
    double touch_seconds;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void gather(struct info *in, bool touch)
{
    const struct mk_safetensors *st = in->m->st;
    for (size_t i = 0; i < mk_safetensors_count(st); i++) {
        const struct mk_tensor *t = mk_safetensors_at(st, i);
        in->dtype_bytes[t->dtype] += t->nbytes;
    }
    if (!touch) return;
    double t0 = now_seconds();
    volatile uint64_t sum = mk_safetensors_touch(st);
    (void)sum;
    in->touch_seconds = now_seconds() - t0;
    in->touch_bytes = mk_safetensors_data_bytes(st);
    in->touched = true;
}

static double gbps(uint64_t bytes, double s) { return s > 0 ? (double)bytes / s / 1e9 : 0.0; }

static void print_text(const struct info *in)
{
    const struct mk_model *m = in->m;
    const struct mk_config *c = &m->cfg;
    printf("dir:          %s\n", m->dir);
    printf("family:       %s\n", mk_family_name(c->family));
    printf("layers:       %d\nhidden:       %d\nintermediate: %d\n", c->n_layers, c->hidden_size,
           c->intermediate_size);
    printf("heads:        %d (kv %d), head_dim %d\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("vocab:        %d\nmax_position: %d\n", c->vocab_size, c->max_position);
    printf("rope:         theta %g", c->rope_theta);
    if (c->rope_type == MK_ROPE_LLAMA3)
        printf(", llama3 factor %g low %g high %g original %d", c->rope_factor,
               c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_position);
    printf("\nrms_norm_eps: %g\n", c->rms_norm_eps);
    printf("tied:         %s\nqkv_bias:     %s\nqk_norm:      %s\n",
           c->tie_word_embeddings ? "yes" : "no", c->qkv_bias ? "yes" : "no",
           c->qk_norm ? "yes" : "no");
    printf("dtype:        %s\n", mk_dtype_name(c->dtype));
    printf("params:       %lld\n", (long long)mk_model_params(m));
    printf("tensors:      %zu in %zu file(s)\n", mk_safetensors_count(m->st),
           mk_safetensors_nfiles(m->st));
    for (int d = 0; d < MK_DTYPE_COUNT; d++)
        if (in->dtype_bytes[d])
            printf("bytes %-6s  %llu\n", mk_dtype_name((enum mk_dtype)d),
                   (unsigned long long)in->dtype_bytes[d]);
    int64_t sb = mk_config_step_bytes(c);
    printf("step_bytes:   %lld (%.3f GB per decode step, bf16)\n", (long long)sb, (double)sb / 1e9);
    printf("eos:         ");
    for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_token_ids[i]);
    printf("%s\nbos:          %d\n", c->n_eos ? "" : " none", c->bos_token_id);
    printf("load:         %.3f s (headers mapped and validated)\n", m->load_seconds);
    if (in->touched)
        printf("touch:        %llu bytes in %.3f s = %.2f GB/s\n",
               (unsigned long long)in->touch_bytes, in->touch_seconds,
               gbps(in->touch_bytes, in->touch_seconds));
}

static json_t *config_json(const struct mk_config *c)
{
    json_t *eos = json_array();
    for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s}",
                          "family", mk_family_name(c->family), "n_layers", c->n_layers,
                          "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size,
                          "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads, "head_dim", c->head_dim,
                          "vocab_size", c->vocab_size, "max_position", c->max_position,
                          "rms_norm_eps", (double)c->rms_norm_eps, "rope_theta", (double)c->rope_theta,
                          "rope_type", c->rope_type == MK_ROPE_LLAMA3 ? "llama3" : "default");
    json_object_set_new(o, "tied", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "qkv_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "qk_norm", json_boolean(c->qk_norm));
    json_object_set_new(o, "dtype", json_string(mk_dtype_name(c->dtype)));
    json_object_set_new(o, "bos_token_id", json_integer(c->bos_token_id));
    json_object_set_new(o, "eos_token_ids", eos);
    return o;
}

static void print_json(const struct info *in)
{
    const struct mk_model *m = in->m;
    json_t *o = config_json(&m->cfg);
    json_t *bytes = json_object();
    for (int d = 0; d < MK_DTYPE_COUNT; d++)
        if (in->dtype_bytes[d])
            json_object_set_new(bytes, mk_dtype_name((enum mk_dtype)d),
                                json_integer((json_int_t)in->dtype_bytes[d]));
    json_object_set_new(o, "dir", json_string(m->dir));
    json_object_set_new(o, "params", json_integer(mk_model_params(m)));
    json_object_set_new(o, "bytes", bytes);
    json_object_set_new(o, "tensors", json_integer((json_int_t)mk_safetensors_count(m->st)));
    json_object_set_new(o, "files", json_integer((json_int_t)mk_safetensors_nfiles(m->st)));
    json_object_set_new(o, "step_bytes", json_integer(mk_config_step_bytes(&m->cfg)));
    json_object_set_new(o, "load_seconds", json_real(m->load_seconds));
    if (in->touched) {
        json_object_set_new(o, "touch_bytes", json_integer((json_int_t)in->touch_bytes));
        json_object_set_new(o, "touch_seconds", json_real(in->touch_seconds));
        json_object_set_new(o, "touch_gb_per_s", json_real(gbps(in->touch_bytes, in->touch_seconds)));
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

int mk_cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    const char *dir = NULL;
    bool as_json = false, touch = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) as_json = true;
        else if (!strcmp(argv[i], "--touch")) touch = true;
        else if (argv[i][0] == '-') return cli_usage_error(argv[0], usage, "unknown option '%s'", argv[i]);
        else if (dir) return cli_usage_error(argv[0], usage, "more than one DIR ('%s')", argv[i]);
        else dir = argv[i];
    }
    if (!dir) return cli_usage_error(argv[0], usage, "missing DIR");
    struct mk_model *m;
    if (mk_model_load(dir, &m) != MK_OK) {
        fprintf(stderr, "mk info: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    struct info in = {.m = m};
    gather(&in, touch);
    if (as_json) print_json(&in);
    else print_text(&in);
    mk_model_free(m);
    return MK_EXIT_OK;
}
