/* mk serve — the OpenAI-compatible HTTP server over a checkpoint directory (see
 * mk/server.h). Listens first (/health answers 503 while the model loads), then loads the
 * model, tokenizer and backend, warms up, and serves until SIGINT or SIGTERM. */
#include "cli.h"
#include "mk/runtime.h"
#include "mk/server.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: mk serve DIR [options]\n"
    "  OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions (streaming\n"
    "  or not), /v1/models, /tokenize, /detokenize, /health, /metrics. Needs\n"
    "  DIR/tokenizer.json. Stops on SIGINT / SIGTERM.\n"
    "  --host ADDR               IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
    "  --port N                  TCP port (default 8000; 0 = any free port, printed)\n"
    "  --max-batch B             requests per engine run, 1..16 (default 16)\n"
    "  --max-queue Q             requests waiting for a batch; more get 429 (default 256)\n"
    "  --timeout S               seconds a request may take from arrival; it then ends\n"
    "                            with finish_reason \"timeout\" (default 600; 0 = none)\n"
    "  --api-key KEY             require \"Authorization: Bearer KEY\" (401 otherwise)\n"
    "  --served-model-name NAME  model id in /v1/models and requests (default: DIR's name)\n"
    "  --max-ctx N               positions per request, prompt + max_tokens (default: the\n"
    "                            model's max_position_embeddings; 4096 on the GPU)\n"
    "  --max-body BYTES          request body cap (default 2097152)\n"
    "  --backend auto|cpu|gpu    auto (default): the GPU when one is found, else the CPU\n"
    "                            reference (requests for sampling or logprobs the backend\n"
    "                            cannot do get 400)\n";

enum { DEFAULT_PORT = 8000, DEFAULT_QUEUE = 256, DEFAULT_GPU_CTX = 4096, DEFAULT_BODY = 2 << 20 };
static const double DEFAULT_TIMEOUT_S = 600.0;

struct opts {
    const char *dir, *host, *api_key, *name, *backend;
    long port, batch, queue, ctx, body;
    double timeout;
};

static int parse_flag(int argc, char **argv, int *i, struct opts *o)
{
    static const char *const flags[] = {"--host", "--port", "--max-batch", "--max-queue", "--timeout", "--api-key",
                                        "--served-model-name", "--max-ctx", "--max-body", "--backend"};
    const char *cmd = argv[0], *a = argv[*i];
    bool known = false;
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) known |= !strcmp(a, flags[k]);
    if (!known) return cli_usage_error(cmd, usage, "unknown option '%s'", a);
    const char *v = cli_value(cmd, argc, argv, i);
    if (!v) return MK_EXIT_USAGE;
    bool ok = true;
    if (!strcmp(a, "--host")) o->host = v;
    else if (!strcmp(a, "--port")) ok = cli_int(cmd, a, v, 0, 65535, &o->port);
    else if (!strcmp(a, "--max-batch")) ok = cli_int(cmd, a, v, 1, MK_MAX_BATCH, &o->batch);
    else if (!strcmp(a, "--max-queue")) ok = cli_int(cmd, a, v, 1, 1 << 20, &o->queue);
    else if (!strcmp(a, "--timeout")) ok = cli_float(cmd, a, v, 0, 1e7, &o->timeout);
    else if (!strcmp(a, "--api-key")) o->api_key = v;
    else if (!strcmp(a, "--served-model-name")) o->name = v;
    else if (!strcmp(a, "--max-ctx")) ok = cli_int(cmd, a, v, 2, INT_MAX, &o->ctx);
    else if (!strcmp(a, "--max-body")) ok = cli_int(cmd, a, v, 1024, 1L << 30, &o->body);
    else if (!strcmp(a, "--backend") && (!strcmp(v, "auto") || !strcmp(v, "cpu") || !strcmp(v, "gpu"))) o->backend = v;
    else return cli_usage_error(cmd, usage, "--backend: unknown value '%s'", v);
    return ok ? MK_EXIT_OK : MK_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.host = "127.0.0.1", .backend = "auto", .port = DEFAULT_PORT, .batch = MK_MAX_BATCH,
                       .queue = DEFAULT_QUEUE, .body = DEFAULT_BODY, .timeout = DEFAULT_TIMEOUT_S};
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
    if (o->api_key && !o->api_key[0]) return cli_usage_error(argv[0], usage, "--api-key: expected a non-empty key");
    return MK_EXIT_OK;
}

/* The last path component of DIR, the default model id. */
static void dir_name(const char *dir, char *out, size_t cap)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t a = n;
    while (a > 0 && dir[a - 1] != '/') a--;
    snprintf(out, cap, "%.*s", (int)(n - a), dir + a);
}

static int fail(const char *what)
{
    fprintf(stderr, "mk serve: %s%s\n", what, mk_errmsg());
    return MK_EXIT_FAIL;
}

/* The GPU backend when asked for or (auto) when a device is found, else the CPU one. */
static int make_backend(const struct opts *o, const struct mk_model *m, struct mk_backend **b)
{
    struct mk_gpu_info gi;
    const bool want_gpu = strcmp(o->backend, "cpu") != 0;
    if (want_gpu && mk_gpu_query(&gi) == MK_OK) {
        const int ctx = o->ctx ? (int)o->ctx : DEFAULT_GPU_CTX;
        if (mk_backend_gpu_new(m, (int)o->batch, ctx < m->cfg.max_position ? ctx : m->cfg.max_position, b) == MK_OK)
            return MK_EXIT_OK;
        if (!strcmp(o->backend, "gpu")) return fail("gpu backend: ");
        fprintf(stderr, "mk serve: gpu backend unavailable (%s); using the CPU reference\n", mk_errmsg());
    }
    return mk_backend_cpu_new(m, b) == MK_OK ? MK_EXIT_OK : fail("");
}

static int serve(const struct opts *o, struct mk_server *srv)
{
    struct mk_model *m = NULL;
    struct mk_tokenizer *tok = NULL;
    struct mk_backend *b = NULL;
    struct mk_engine *e = NULL;
    int rc = MK_EXIT_OK;
    if (mk_model_load(o->dir, &m) != MK_OK) rc = fail("");
    if (!rc && mk_tokenizer_load(o->dir, &tok) != MK_OK) rc = fail("tokenizer (serve needs DIR/tokenizer.json): ");
    if (!rc) rc = make_backend(o, m, &b);
    struct mk_server_engine se = {0};
    if (!rc) {
        int ctx = b->max_ctx < m->cfg.max_position ? b->max_ctx : m->cfg.max_position;
        if (o->ctx && o->ctx < ctx) ctx = (int)o->ctx;
        se = (struct mk_server_engine){.model = m, .tok = tok, .backend = b->name, .max_batch = b->max_batch,
                                       .ctx = ctx};
        if (mk_engine_new(m, tok, b, &e) != MK_OK) rc = fail("");
        se.engine = e;
    }
    if (!rc && mk_server_attach(srv, &se) != MK_OK) rc = fail("");
    if (!rc) {
        fprintf(stderr, "mk serve: ready: %s, backend %s, batch %d, context %d\n", o->name, se.backend,
                se.max_batch < o->batch ? se.max_batch : (int)o->batch, se.ctx);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "mk serve: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    mk_server_stop(srv); /* before the engine: the scheduler thread uses it */
    mk_engine_free(e);
    mk_tokenizer_free(tok);
    mk_model_free(m);
    return rc;
}

int mk_cmd_serve(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != MK_EXIT_OK) return rc;
    struct mk_gpu_info gi;
    if (!strcmp(o.backend, "gpu") && mk_gpu_query(&gi) != MK_OK) {
        fprintf(stderr, "mk serve: --backend gpu: %s\n", mk_errmsg());
        return MK_EXIT_NO_GPU;
    }
    char name[256];
    dir_name(o.dir, name, sizeof name);
    if (!o.name) o.name = name;
    /* every thread started from here on inherits the mask; sigwait takes the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    const struct mk_server_opts so = {.host = o.host, .port = (int)o.port, .max_batch = (int)o.batch,
                                      .max_queue = (int)o.queue, .timeout_s = o.timeout, .api_key = o.api_key,
                                      .model_name = o.name, .max_body = (size_t)o.body};
    struct mk_server *srv;
    if (mk_server_start(&so, &srv) != MK_OK) return fail("");
    const bool v6 = strchr(o.host, ':') != NULL;
    fprintf(stderr, "mk serve: listening on http://%s%s%s:%d (loading %s)\n", v6 ? "[" : "", o.host, v6 ? "]" : "",
            mk_server_port(srv), o.dir);
    return serve(&o, srv);
}
