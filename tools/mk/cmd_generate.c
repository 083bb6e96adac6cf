/* mk generate — generate from a checkpoint directory with the engine (CPU reference
 * backend; the GPU backend when it exists). Text streams to stdout as tokens arrive. */
#include "cli.h"
#include "mk/engine.h"
#include "mk/runtime.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: mk generate DIR (--prompt TEXT | --prompt-ids 1,2,3) [-n N] [options]\n"
    "  Greedy unless --temperature is given (> 0). Stops at the model's eos ids\n"
    "  (generation_config.json) or after N tokens.\n"
    "  --prompt TEXT        prompt text (needs DIR/tokenizer.json; BOS as the tokenizer adds)\n"
    "  --prompt-ids LIST    prompt token ids, comma-separated (works without a tokenizer)\n"
    "  -n N                 most tokens to generate (default 32)\n"
    "  --chat               wrap --prompt as one user message in the chat template\n"
    "  --thinking on|off    Qwen3 chat: off appends an empty <think></think> (default on)\n"
    "  --temperature T      sample at temperature T (0 = greedy)\n"
    "  --top-k K            sample among the K most likely tokens (0 = all)\n"
    "  --top-p P            sample from the smallest set with probability >= P (1 = all)\n"
    "  --seed S             seed of the sampling draws (default 0)\n"
    "  --ignore-eos         do not stop at eos ids: generate exactly N tokens\n"
    "  --backend cpu|gpu    CPU reference (default) or the GPU megakernel (which reports no\n"
    "                       log-probs: its JSON steps have logprob null, top [])\n"
    "  --output text|json   streamed text (ids without a tokenizer), or one JSON object:\n"
    "                       {\"prompt_ids\", \"ids\", \"text\", \"finish_reason\", \"steps\":\n"
    "                        [{\"id\", \"logprob\", \"top\": [[id, logprob] x5]}]}\n";

enum { DEFAULT_TOKENS = 32, MAX_PROMPT_IDS = 1 << 20 };

struct opts {
    const char *dir, *prompt, *prompt_ids;
    long n_tokens, top_k, seed;
    double temperature, top_p;
    bool chat, thinking, ignore_eos, json, gpu;
};

static int parse_flag(int argc, char **argv, int *i, struct opts *o)
{
    const char *cmd = argv[0], *a = argv[*i], *v;
    if (!strcmp(a, "--chat")) return o->chat = true, MK_EXIT_OK;
    if (!strcmp(a, "--ignore-eos")) return o->ignore_eos = true, MK_EXIT_OK;
    if (!(v = cli_value(cmd, argc, argv, i))) return MK_EXIT_USAGE;
    bool ok = true;
    if (!strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--prompt-ids")) o->prompt_ids = v;
    else if (!strcmp(a, "-n")) ok = cli_int(cmd, a, v, 1, INT_MAX / 2, &o->n_tokens);
    else if (!strcmp(a, "--temperature")) ok = cli_float(cmd, a, v, 0, 1e6, &o->temperature);
    else if (!strcmp(a, "--top-k")) ok = cli_int(cmd, a, v, 0, INT_MAX, &o->top_k);
    else if (!strcmp(a, "--top-p")) ok = cli_float(cmd, a, v, 0, 1, &o->top_p);
    else if (!strcmp(a, "--seed")) ok = cli_int(cmd, a, v, 0, LONG_MAX, &o->seed);
    else if (!strcmp(a, "--thinking") && (!strcmp(v, "on") || !strcmp(v, "off"))) o->thinking = !strcmp(v, "on");
    else if (!strcmp(a, "--backend") && (!strcmp(v, "cpu") || !strcmp(v, "gpu"))) o->gpu = !strcmp(v, "gpu");
    else if (!strcmp(a, "--output") && (!strcmp(v, "text") || !strcmp(v, "json"))) o->json = !strcmp(v, "json");
    else if (!strcmp(a, "--thinking") || !strcmp(a, "--backend") || !strcmp(a, "--output"))
        return cli_usage_error(cmd, usage, "%s: unknown value '%s'", a, v);
    else return cli_usage_error(cmd, usage, "unknown option '%s'", a);
    return ok ? MK_EXIT_OK : MK_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.n_tokens = DEFAULT_TOKENS, .top_p = 1.0, .thinking = true};
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            int rc = parse_flag(argc, argv, &i, o);
            if (rc != MK_EXIT_OK) return rc;
        } else if (!o->dir) {
            o->dir = argv[i];
        } else {
            return cli_usage_error(argv[0], usage, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!o->dir) return cli_usage_error(argv[0], usage, "DIR is required");
    if (!o->prompt == !o->prompt_ids)
        return cli_usage_error(argv[0], usage, "give exactly one of --prompt and --prompt-ids");
    if (o->chat && !o->prompt) return cli_usage_error(argv[0], usage, "--chat needs --prompt");
    return MK_EXIT_OK;
}

/* "1,2,3" -> ids; false (message printed) on anything else. */
static bool parse_ids(const char *cmd, const char *s, struct mk_ids *out)
{
    for (const char *p = s;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',') || out->n >= MAX_PROMPT_IDS ||
            mk_ids_push(out, (int32_t)v) != MK_OK) {
            fprintf(stderr, "mk %s: --prompt-ids expects comma-separated ids >= 0, got '%s'\n", cmd, s);
            return false;
        }
        if (!*end) return true;
        p = end + 1;
    }
}

static int fail(const char *what)
{
    fprintf(stderr, "mk generate: %s%s\n", what, mk_errmsg());
    return MK_EXIT_FAIL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- output ------------------------------------------------------------------------ */

struct out {
    bool json, have_tok;
    bool logprobs;       /* the backend reports log-probabilities (else JSON null) */
    json_t *ids, *steps; /* json: arrays being filled */
    char *text;          /* json: all text so far */
    size_t text_len;
    int n;
    double t_first, t_last;
};

static bool on_token(void *ctx, int req, const struct mk_token *t)
{
    struct out *o = ctx;
    (void)req;
    o->t_last = now();
    if (o->n++ == 0) o->t_first = o->t_last;
    if (!o->json) {
        if (o->have_tok) fwrite(t->text, 1, t->text_len, stdout);
        else printf(o->n > 1 ? " %d" : "%d", t->id);
        fflush(stdout);
        return true;
    }
    char *p = realloc(o->text, o->text_len + t->text_len + 1);
    if (!p) return false;
    o->text = p;
    memcpy(o->text + o->text_len, t->text, t->text_len);
    o->text_len += t->text_len;
    o->text[o->text_len] = '\0';
    json_t *top = json_array();
    for (int k = 0; k < t->n_top; k++)
        json_array_append_new(top, json_pack("[i,f]", t->top_ids[k], (double)t->top_logprobs[k]));
    json_array_append_new(o->ids, json_integer(t->id));
    json_t *lp = o->logprobs ? json_real(t->logprob) : json_null();
    json_array_append_new(o->steps, json_pack("{s:i,s:o,s:o}", "id", t->id, "logprob", lp, "top", top));
    return true;
}

static bool print_json(const struct out *o, const struct mk_ids *prompt, enum mk_finish f)
{
    json_t *pids = json_array();
    for (size_t i = 0; i < prompt->n; i++) json_array_append_new(pids, json_integer(prompt->ids[i]));
    json_t *root = json_pack("{s:o,s:O,s:s%,s:s,s:O}", "prompt_ids", pids, "ids", o->ids, "text",
                             o->text ? o->text : "", o->text_len, "finish_reason", mk_finish_name(f),
                             "steps", o->steps);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(root);
    return s != NULL;
}

/* ---- main -------------------------------------------------------------------------- */

static bool has_tokenizer(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    return access(path, R_OK) == 0;
}

static int make_prompt(const struct opts *o, const struct mk_tokenizer *tok, struct mk_ids *ids)
{
    if (o->prompt_ids) return parse_ids("generate", o->prompt_ids, ids) ? MK_EXIT_OK : MK_EXIT_USAGE;
    if (!tok) {
        fprintf(stderr, "mk generate: %s has no tokenizer.json: give the prompt with --prompt-ids\n", o->dir);
        return MK_EXIT_FAIL;
    }
    const struct mk_chat_msg msg = {"user", o->prompt};
    enum mk_status st = o->chat ? mk_prompt_chat(tok, &msg, 1, o->thinking, ids)
                                : mk_prompt_text(tok, o->prompt, ids);
    return st == MK_OK ? MK_EXIT_OK : fail("prompt: ");
}

/* The GPU backend runs one request of up to prompt + n positions. */
static enum mk_status make_backend(const struct opts *o, const struct mk_model *m,
                                   const struct mk_ids *prompt, struct mk_backend **b)
{
    if (!o->gpu) return mk_backend_cpu_new(m, b);
    long ctx = (long)prompt->n + o->n_tokens;
    return mk_backend_gpu_new(m, 1, ctx < m->cfg.max_position ? (int)ctx : m->cfg.max_position, b);
}

static int run(const struct opts *o, struct mk_engine *e, const struct mk_ids *prompt, bool have_tok)
{
    struct mk_request r = {
        .prompt = prompt->ids, .n_prompt = (int)prompt->n, .max_tokens = (int)o->n_tokens,
        .sampling = {(float)o->temperature, (int)o->top_k, (float)o->top_p, (uint64_t)o->seed},
        .ignore_eos = o->ignore_eos, .top_logprobs = o->json && !o->gpu ? MK_TOP_MAX : 0,
    };
    struct out out = {.json = o->json, .have_tok = have_tok, .logprobs = !o->gpu,
                      .ids = json_array(), .steps = json_array()};
    enum mk_finish finish = MK_FINISH_NONE;
    const double t0 = now();
    enum mk_status st = mk_engine_generate(e, &r, 1, on_token, &out, &finish);
    if (st == MK_OK && o->json && !print_json(&out, prompt, finish))
        st = mk_error(MK_ERR_INTERNAL, "cannot encode the JSON output (out of memory?)");
    if (st == MK_OK && !o->json) putchar('\n');
    fflush(stdout); /* before the statistics on stderr */
    if (st == MK_OK && out.n > 0)
        fprintf(stderr, "mk generate: %d tokens (%s); prompt %zu tokens, first token %.3f s; %.1f ms/token after\n",
                out.n, mk_finish_name(finish), prompt->n, out.t_first - t0,
                out.n > 1 ? (out.t_last - out.t_first) * 1e3 / (out.n - 1) : 0.0);
    json_decref(out.ids);
    json_decref(out.steps);
    free(out.text);
    return st == MK_OK ? MK_EXIT_OK : fail("");
}

int mk_cmd_generate(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != MK_EXIT_OK) return rc;
    if (o.gpu) {
        struct mk_gpu_info gi;
        if (mk_gpu_query(&gi) != MK_OK) {
            fprintf(stderr, "mk generate: --backend gpu: %s\n", mk_errmsg());
            return MK_EXIT_NO_GPU;
        }
    }
    struct mk_model *m = NULL;
    struct mk_tokenizer *tok = NULL;
    struct mk_backend *b = NULL;
    struct mk_engine *e = NULL;
    struct mk_ids prompt = {0};
    if (mk_model_load(o.dir, &m) != MK_OK) rc = fail("");
    if (!rc && has_tokenizer(o.dir) && mk_tokenizer_load(o.dir, &tok) != MK_OK) rc = fail("");
    if (!rc) rc = make_prompt(&o, tok, &prompt);
    if (!rc && make_backend(&o, m, &prompt, &b) != MK_OK) rc = fail("");
    if (!rc && mk_engine_new(m, tok, b, &e) != MK_OK) rc = fail("");
    if (!rc) rc = run(&o, e, &prompt, tok != NULL);
    mk_engine_free(e);
    mk_ids_free(&prompt);
    mk_tokenizer_free(tok);
    mk_model_free(m);
    return rc;
}
