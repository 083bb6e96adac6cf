/* mk synth: write a random-weight checkpoint directory of a real architecture. */
#include "cli.h"
#include "synth.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: mk synth (--arch A --preset P | --config FILE) --out DIR [options]\n"
    "  Writes a Hugging Face checkpoint directory with RANDOM weights of a real\n"
    "  architecture's shapes: config.json, generation_config.json, model.safetensors\n"
    "  or model-0000K-of-0000N.safetensors + model.safetensors.index.json.\n"
    "  --arch A          qwen3, llama, qwen2, mistral\n"
    "  --preset P        qwen3: tiny 0.6b 1.7b 4b 8b; llama: tiny 1b 3b 8b (Llama 3.x);\n"
    "                    qwen2: tiny 0.5b 7b (Qwen2.5); mistral: tiny 7b (v0.3)\n"
    "  --config FILE     take the shapes from a config.json instead (copied to DIR)\n"
    "  --out DIR         created when missing; weight files of an earlier run are replaced\n"
    "  --dtype T         bf16 (default, or the --config's torch_dtype), f16, f32\n"
    "  --seed S          the weights are a function of the seed (default 0)\n"
    "  --tokenizer DIR   copy DIR/tokenizer.json and tokenizer_config.json; every token id\n"
    "                    must be < vocab_size\n"
    "  --shard-bytes N   shard size limit in bytes (default 4000000000)\n"
    "  --threads N       generation and write threads (default: every core)\n";

static const long DEFAULT_SHARD_BYTES = 4000000000L;

struct synth_args {
    const char *arch, *preset, *dtype;
    struct synth_opts o;
};

static bool parse_dtype(const char *s, enum mk_dtype *out)
{
    static const char *const names[] = {"f32", "f16", "bf16"}; /* enum mk_dtype order */
    for (int t = 0; t < MK_DTYPE_COUNT; t++)
        if (!strcmp(s, names[t])) {
            *out = (enum mk_dtype)t;
            return true;
        }
    return false;
}

/* Returns MK_EXIT_OK or the exit code of a usage error. */
static int parse_args(int argc, char **argv, struct synth_args *a)
{
    const char *cmd = argv[0];
    long v;
    a->o.shard_bytes = (uint64_t)DEFAULT_SHARD_BYTES;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *val;
        bool known = !strcmp(f, "--arch") || !strcmp(f, "--preset") || !strcmp(f, "--config") ||
                     !strcmp(f, "--out") || !strcmp(f, "--dtype") || !strcmp(f, "--seed") ||
                     !strcmp(f, "--tokenizer") || !strcmp(f, "--shard-bytes") ||
                     !strcmp(f, "--threads");
        if (!known) return cli_usage_error(cmd, usage, "unknown option '%s'", f);
        if (!(val = cli_value(cmd, argc, argv, &i))) return MK_EXIT_USAGE;
        if (!strcmp(f, "--arch")) a->arch = val;
        else if (!strcmp(f, "--preset")) a->preset = val;
        else if (!strcmp(f, "--config")) a->o.config_path = val;
        else if (!strcmp(f, "--out")) a->o.out_dir = val;
        else if (!strcmp(f, "--dtype")) a->dtype = val;
        else if (!strcmp(f, "--tokenizer")) a->o.tokenizer_dir = val;
        else if (!strcmp(f, "--seed")) {
            if (!cli_int(cmd, f, val, 0, __LONG_MAX__, &v)) return MK_EXIT_USAGE;
            a->o.seed = (uint64_t)v;
        } else if (!strcmp(f, "--shard-bytes")) {
            if (!cli_int(cmd, f, val, 1, __LONG_MAX__, &v)) return MK_EXIT_USAGE;
            a->o.shard_bytes = (uint64_t)v;
        } else {
            if (!cli_int(cmd, f, val, 0, 256, &v)) return MK_EXIT_USAGE;
            a->o.threads = (int)v;
        }
    }
    if (!a->o.out_dir) return cli_usage_error(cmd, usage, "--out DIR is required");
    if (!!a->preset == !!a->o.config_path)
        return cli_usage_error(cmd, usage, "give either --preset (with --arch) or --config");
    if (a->preset && !a->arch) return cli_usage_error(cmd, usage, "--preset needs --arch");
    enum synth_arch arch;
    if (a->arch && !synth_arch_parse(a->arch, &arch))
        return cli_usage_error(cmd, usage, "--arch expects qwen3, llama, qwen2 or mistral, "
                               "got '%s'", a->arch);
    if (a->dtype && !parse_dtype(a->dtype, &a->o.dtype))
        return cli_usage_error(cmd, usage, "--dtype expects bf16, f16 or f32, got '%s'",
                               a->dtype);
    return MK_EXIT_OK;
}

/* The spec from --preset or --config; MK_EXIT_OK or an exit code. */
static int resolve_spec(struct synth_args *a, struct synth_spec *s)
{
    enum synth_arch arch = SYNTH_QWEN3;
    if (a->arch) synth_arch_parse(a->arch, &arch);
    if (a->preset) {
        if (!synth_preset(arch, a->preset, s))
            return cli_usage_error("synth", usage, "--preset for %s expects one of %s, got '%s'",
                                   a->arch, synth_preset_list(arch), a->preset);
        if (!a->dtype) a->o.dtype = MK_DTYPE_BF16;
        return MK_EXIT_OK;
    }
    enum mk_dtype cfg_dtype;
    if (synth_spec_from_config(a->o.config_path, s, &cfg_dtype) != MK_OK) {
        fprintf(stderr, "mk synth: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    if (a->arch && s->arch != arch)
        return cli_usage_error("synth", usage, "--arch %s but %s has model_type %s", a->arch,
                               a->o.config_path, synth_arch_name(s->arch));
    if (!a->dtype) a->o.dtype = cfg_dtype;
    return MK_EXIT_OK;
}

int mk_cmd_synth(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct synth_args a = {0};
    struct synth_spec s;
    int rc = parse_args(argc, argv, &a);
    if (rc == MK_EXIT_OK) rc = resolve_spec(&a, &s);
    if (rc != MK_EXIT_OK) return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t bytes = 0;
    int files = 0;
    if (synth_write(&s, &a.o, &bytes, &files) != MK_OK) {
        fprintf(stderr, "mk synth: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("wrote %s: %s %s, RANDOM weights (seed %llu), %lld parameters, %llu bytes in %d "
           "file%s, %.2f s (%.0f MB/s)\n",
           a.o.out_dir, synth_arch_name(s.arch), s.preset ? s.preset : "(from --config)",
           (unsigned long long)a.o.seed, (long long)synth_params(&s), (unsigned long long)bytes,
           files, files == 1 ? "" : "s", sec, sec > 0 ? (double)bytes / sec / 1e6 : 0.0);
    return MK_EXIT_OK;
}
