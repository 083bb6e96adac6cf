/* The libmicrohttpd daemon: one thread per connection (blocking waits for the engine are
 * allowed there, and a client's hang-up is seen by polling its socket), request bodies
 * gathered up to a cap, routing, the API key, JSON answers, and the server's lifetime. */
#include "server/server_int.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum {
    CONNECTION_LIMIT = 512,          /* open connections (one thread each) */
    IDLE_TIMEOUT_S = 120,            /* an idle connection is closed after this */
    HEADER_MEMORY = 64 * 1024,       /* per-connection memory for the request head */
    THREAD_STACK = 1024 * 1024,
    WARMUP_TOKENS = 2,
};

/* Per-request state kept by MHD between calls of the handler. */
struct conn {
    enum srv_endpoint ep;
    char *body;
    size_t len, cap;
    bool too_big;
};

static const struct { const char *path; enum srv_endpoint ep; const char *method; } routes[] = {
    {"/v1/completions", EP_COMPLETIONS, "POST"}, {"/v1/chat/completions", EP_CHAT, "POST"},
    {"/v1/models", EP_MODELS, "GET"},           {"/tokenize", EP_TOKENIZE, "POST"},
    {"/detokenize", EP_DETOKENIZE, "POST"},      {"/health", EP_HEALTH, "GET"},
    {"/metrics", EP_METRICS, "GET"},
};

static enum srv_endpoint route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) return routes[i].ep;
    return EP_OTHER;
}

/* ---- answers -------------------------------------------------------------------------- */

static int send_text(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep, int status,
                     char *text, const char *type)
{
    struct MHD_Response *r =
        text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(text);
        static char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        r = MHD_create_response_from_buffer(strlen(oom), oom, MHD_RESPMEM_PERSISTENT);
        status = 500;
        type = "application/json";
        if (!r) return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    const enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    srv_metrics_request(&s->metrics, ep, status);
    return ok;
}

int srv_send_json(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep, int status,
                  json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return send_text(s, c, ep, status, text, "application/json");
}

int srv_send_error(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                   const struct srv_err *e)
{
    return srv_send_json(s, c, ep, e->status, srv_error_json(e));
}

bool srv_parse_body(const char *body, size_t len, json_t **out, struct srv_err *e)
{
    json_error_t err;
    /* jansson checks UTF-8 and refuses \u0000; the reason text would quote input, so it
     * is left out of the message */
    *out = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!*out)
        return srv_fail(e, 400, NULL, "body: expected one JSON object in UTF-8 (error at line %d, column %d)",
                        err.line, err.column);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return srv_fail(e, 400, NULL, "body: expected a JSON object");
    }
    return true;
}

/* ---- small endpoints -------------------------------------------------------------------- */

static int send_models(struct mk_server *s, struct MHD_Connection *c)
{
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:i,s:s}", "id", s->o.model_name, "object", "model", "created",
                          (json_int_t)s->created, "owned_by", "megakernel", "max_model_len", s->eng.ctx,
                          "backend", s->eng.backend);
    return srv_send_json(s, c, EP_MODELS, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

static int send_tokenize(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                         const struct conn *k)
{
    struct srv_err e;
    json_t *b, *out = NULL;
    if (!srv_parse_body(k->body, k->len, &b, &e)) return srv_send_error(s, c, ep, &e);
    const bool ok = ep == EP_TOKENIZE ? srv_tokenize(s, b, &out, &e) : srv_detokenize(s, b, &out, &e);
    json_decref(b);
    return ok ? srv_send_json(s, c, ep, 200, out) : srv_send_error(s, c, ep, &e);
}

/* ---- the handler ------------------------------------------------------------------------- */

static bool needs_key(enum srv_endpoint ep)
{
    return ep != EP_HEALTH && ep != EP_METRICS;
}

/* Constant-time comparison of the bearer token with the key. */
static bool key_ok(const struct mk_server *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *got = h + 7, *want = s->o.api_key;
    const size_t n = strlen(got), m = strlen(want);
    unsigned diff = n != m;
    for (size_t i = 0; i < m; i++) diff |= (unsigned char)want[i] ^ (unsigned char)(i < n ? got[i] : 0);
    return diff == 0;
}

static bool is_ready(struct mk_server *s)
{
    pthread_mutex_lock(&s->mu);
    const bool r = s->ready && !s->stopping;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static int reject(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep, int status,
                  const char *msg)
{
    struct srv_err e;
    srv_fail(&e, status, NULL, "%s", msg);
    return srv_send_error(s, c, ep, &e);
}

static int dispatch(struct mk_server *s, struct MHD_Connection *c, struct conn *k, const char *method)
{
    const enum srv_endpoint ep = k->ep;
    if (ep == EP_OTHER) return reject(s, c, ep, 404, "no such endpoint");
    if (s->o.api_key && needs_key(ep) && !key_ok(s, c)) return reject(s, c, ep, 401, "missing or wrong API key");
    if (strcmp(method, routes[ep].method) != 0)
        return reject(s, c, ep, 405, !strcmp(routes[ep].method, "GET") ? "method not allowed; use GET"
                                                                       : "method not allowed; use POST");
    if (k->too_big) return reject(s, c, ep, 413, "body: larger than this server accepts");
    if (ep == EP_METRICS) return send_text(s, c, ep, 200, srv_metrics_text(s), "text/plain; version=0.0.4");
    if (!is_ready(s)) return reject(s, c, ep, 503, "the model is loading");
    switch (ep) {
    case EP_HEALTH: return send_text(s, c, ep, 200, strdup(""), "text/plain");
    case EP_MODELS: return send_models(s, c);
    case EP_COMPLETIONS:
    case EP_CHAT: return srv_generate(s, c, ep, k->body, k->len);
    default: return send_tokenize(s, c, ep, k);
    }
}

static bool body_too_big(const struct mk_server *s, struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return false;
    char *end;
    const unsigned long long n = strtoull(cl, &end, 10);
    return end != cl && n > s->o.max_body;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct mk_server *s = cls;
    struct conn *k = *con_cls;
    (void)version;
    if (!k) {
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        k->ep = route(url);
        *con_cls = k;
        /* refuse an announced oversized body before reading it */
        if (body_too_big(s, c)) {
            k->too_big = true;
            return dispatch(s, c, k, method);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!k->too_big && k->len + *upload_size <= s->o.max_body) {
            if (k->len + *upload_size + 1 > k->cap) {
                size_t cap = k->cap ? k->cap : 4096;
                while (cap < k->len + *upload_size + 1) cap *= 2;
                char *p = realloc(k->body, cap);
                if (!p) return MHD_NO;
                k->body = p;
                k->cap = cap;
            }
            memcpy(k->body + k->len, upload, *upload_size);
            k->len += *upload_size;
        } else {
            k->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(s, c, k, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct conn *k = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (!k) return;
    free(k->body);
    free(k);
    *con_cls = NULL;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static bool valid_utf8(const char *p)
{
    json_t *v = json_string(p);
    json_decref(v);
    return v != NULL;
}

static enum mk_status check_opts(const struct mk_server_opts *o)
{
    if (!o->host || !o->model_name || !valid_utf8(o->model_name) || !o->model_name[0])
        return mk_error(MK_ERR_ARG, "serve: host and a non-empty UTF-8 model name are required");
    if (o->port < 0 || o->port > 65535) return mk_error(MK_ERR_ARG, "serve: port: expected 0..65535, got %d", o->port);
    if (o->max_batch < 1 || o->max_batch > MK_MAX_BATCH)
        return mk_error(MK_ERR_ARG, "serve: max batch: expected 1..%d, got %d", MK_MAX_BATCH, o->max_batch);
    if (o->max_queue < 1) return mk_error(MK_ERR_ARG, "serve: max queue: expected >= 1, got %d", o->max_queue);
    if (!(o->timeout_s >= 0)) return mk_error(MK_ERR_ARG, "serve: timeout: expected >= 0");
    if (o->max_body < 1024) return mk_error(MK_ERR_ARG, "serve: max body: expected >= 1024 bytes");
    if (o->api_key && (!o->api_key[0] || strchr(o->api_key, '\n')))
        return mk_error(MK_ERR_ARG, "serve: api key: expected a non-empty single-line string");
    return MK_OK;
}

static enum mk_status listen_on(struct mk_server *s)
{
    struct sockaddr_storage ss = {0};
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->o.port);
    } else if (inet_pton(AF_INET6, s->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->o.port);
        flags |= MHD_USE_IPv6;
    } else {
        return mk_error(MK_ERR_ARG, "serve: host: expected an IPv4 or IPv6 address, got '%s'", s->host);
    }
    s->mhd = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, handler, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_MEMORY,
                              MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK, MHD_OPTION_END);
    if (!s->mhd) return mk_error(MK_ERR_IO, "serve: cannot listen on %s port %d (in use, or not an address of this machine)",
                                 s->host, s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    return MK_OK;
}

static void server_free(struct mk_server *s)
{
    srv_metrics_free(&s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->sched_cv);
    free(s->host);
    free(s->api_key);
    free(s->model_name);
    free(s);
}

enum mk_status mk_server_start(const struct mk_server_opts *o, struct mk_server **out)
{
    *out = NULL;
    enum mk_status st = check_opts(o);
    if (st != MK_OK) return st;
    struct mk_server *s = calloc(1, sizeof *s);
    if (!s) return mk_error(MK_ERR_NOMEM, "serve: out of memory");
    s->o = *o;
    s->host = strdup(o->host);
    s->model_name = strdup(o->model_name);
    s->api_key = o->api_key ? strdup(o->api_key) : NULL;
    s->o.host = s->host, s->o.model_name = s->model_name, s->o.api_key = s->api_key;
    s->created = time(NULL);
    s->seed_state = (uint64_t)s->created ^ ((uint64_t)(uintptr_t)s << 16);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->sched_cv, NULL);
    srv_metrics_init(&s->metrics);
    if (!s->host || !s->model_name || (o->api_key && !s->api_key)) st = mk_error(MK_ERR_NOMEM, "serve: out of memory");
    if (st == MK_OK) st = listen_on(s);
    if (st != MK_OK) {
        server_free(s);
        return st;
    }
    *out = s;
    return MK_OK;
}

int mk_server_port(const struct mk_server *s)
{
    return s->port;
}

static bool warm_token(void *ctx, int req, const struct mk_token *t)
{
    (void)ctx, (void)req, (void)t;
    return true;
}

/* Run one request of `tokens` tokens on the engine, on this thread (the scheduler is not
 * running yet). */
static enum mk_status try_request(const struct mk_server_engine *eng, int tokens, float temperature,
                                  int top_logprobs)
{
    const int32_t id = mk_tokenizer_bos_id(eng->tok) >= 0 ? mk_tokenizer_bos_id(eng->tok) : 0;
    const struct mk_request r = {.prompt = &id, .n_prompt = 1, .max_tokens = tokens, .ignore_eos = true,
                                 .sampling = {.temperature = temperature, .top_p = 1.0f},
                                 .top_logprobs = top_logprobs};
    enum mk_finish f;
    return mk_engine_generate(eng->engine, &r, 1, warm_token, NULL, &f);
}

/* Whether the backend can do what a probe asks: MK_ERR_UNSUPPORTED means no. */
static enum mk_status probe(const struct mk_server_engine *eng, float temperature, int top_logprobs, bool *can)
{
    const enum mk_status st = try_request(eng, 1, temperature, top_logprobs);
    *can = st == MK_OK;
    return st == MK_ERR_UNSUPPORTED ? MK_OK : st;
}

enum mk_status mk_server_attach(struct mk_server *s, const struct mk_server_engine *eng)
{
    if (eng->ctx < 2 || eng->max_batch < 1)
        return mk_error(MK_ERR_ARG, "serve: engine: expected ctx >= 2 and max_batch >= 1");
    bool sample = false, logprob = false;
    enum mk_status st = try_request(eng, WARMUP_TOKENS, 0.0f, 0);
    if (st == MK_OK) st = probe(eng, 1.0f, 0, &sample);
    if (st == MK_OK) st = probe(eng, 0.0f, 1, &logprob);
    if (st != MK_OK) return mk_error_prefix(st, "serve: warm-up: ");
    pthread_mutex_lock(&s->mu);
    s->eng = *eng;
    s->can_sample = sample;
    s->can_logprob = logprob;
    s->batch = eng->max_batch < s->o.max_batch ? eng->max_batch : s->o.max_batch;
    pthread_mutex_unlock(&s->mu);
    st = srv_sched_start(s);
    if (st != MK_OK) return st;
    pthread_mutex_lock(&s->mu);
    s->ready = true;
    pthread_mutex_unlock(&s->mu);
    return MK_OK;
}

void mk_server_stop(struct mk_server *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->sched_cv);
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->mhd); /* joins the connection threads; their waits see `stopping` */
    srv_sched_stop(s);
    MK_ASSERT(s->head == NULL);
    server_free(s);
}
