/* /v1/completions and /v1/chat/completions: parse, queue, then either wait for the whole
 * answer or stream it as server-sent events. Both block the connection's own thread
 * (thread-per-connection mode) in srv_job_wait, which also notices a client hanging up. */
#include "server/server_int.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { STREAM_BLOCK = 16 * 1024 }; /* MHD's buffer for chunks of the event stream */

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- whole answers ------------------------------------------------------------------ */

static int answer_done(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                       struct srv_job *j, time_t created)
{
    struct srv_err e;
    json_t *r = NULL;
    if (j->end == END_ERROR) srv_fail(&e, 500, NULL, "%s", j->err);
    else if (!(r = srv_render_response(s, j, created))) srv_fail(&e, 500, NULL, "out of memory");
    srv_job_release(s, j);
    return r ? srv_send_json(s, c, ep, 200, r) : srv_send_error(s, c, ep, &e);
}

static int wait_whole(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                      struct srv_job *j, time_t created)
{
    const int fd = conn_fd(c);
    size_t seen_len = 0;
    int seen_toks = 0;
    bool done = false;
    while (!done)
        if (!srv_job_wait(s, j, fd, &seen_len, &seen_toks, &done)) {
            srv_job_release(s, j);
            srv_metrics_request(&s->metrics, ep, 499); /* nginx's "client closed request" */
            return MHD_NO;
        }
    return answer_done(s, c, ep, j, created);
}

/* ---- event streams ------------------------------------------------------------------ */

struct stream {
    struct mk_server *s;
    struct srv_job *j;
    int fd;
    time_t created;
    char *buf;          /* events not yet handed to MHD: buf[pos, len) */
    size_t len, pos, cap;
    size_t seen_len;    /* srv_job_wait bookkeeping */
    int seen_toks;
    int next_tok;       /* tokens already sent */
    bool finished;      /* the last event is in buf */
};

static bool put(struct stream *st, const char *p, size_t n)
{
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n) cap *= 2;
        char *q = realloc(st->buf, cap);
        if (!q) return false;
        st->buf = q;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, p, n);
    st->len += n;
    return true;
}

/* "data: JSON\n\n"; steals v. */
static bool put_event(struct stream *st, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    const bool ok = text && put(st, "data: ", 6) && put(st, text, strlen(text)) && put(st, "\n\n", 2);
    free(text);
    return ok;
}

/* The events after the last token: finish reason (or an error), usage, [DONE]. */
static bool put_end(struct stream *st)
{
    const struct srv_job *j = st->j;
    bool ok;
    if (j->end == END_ERROR) {
        struct srv_err e;
        srv_fail(&e, 500, NULL, "%s", j->err);
        ok = put_event(st, srv_error_json(&e));
    } else {
        ok = put_event(st, srv_render_chunk(st->s, j, st->created, "", 0, NULL, 0, srv_end_name(j->end), false));
        if (ok && j->include_usage) ok = put_event(st, srv_render_usage_chunk(st->s, j, st->created));
    }
    st->finished = true;
    return ok && put(st, "data: [DONE]\n\n", 14);
}

/* Wait for news from the job and turn it into events. False: give up the stream. */
static bool fill(struct stream *st)
{
    bool done;
    if (!srv_job_wait(st->s, st->j, st->fd, &st->seen_len, &st->seen_toks, &done)) return false;
    struct srv_view v;
    if (!srv_job_view(st->s, st->j, st->next_tok, &v)) return false;
    bool ok = true;
    for (int i = 0; i < v.n && ok; i++) {
        const struct srv_tok *t = &v.toks[i];
        if (t->hidden) continue;
        ok = put_event(st, srv_render_chunk(st->s, st->j, st->created, v.text + (t->start - v.text_at),
                                            t->end - t->start, t, 1, NULL, false));
    }
    st->next_tok += v.n;
    if (ok && v.done) ok = put_end(st);
    srv_view_free(&v);
    return ok;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct stream *st = cls;
    (void)pos;
    while (st->pos == st->len) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        st->pos = st->len = 0;
        if (!fill(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    const size_t n = st->len - st->pos < max ? st->len - st->pos : max;
    memcpy(out, st->buf + st->pos, n);
    st->pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    srv_job_release(st->s, st->j);
    free(st->buf);
    free(st);
}

static int start_stream(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                        struct srv_job *j, time_t created)
{
    struct stream *st = calloc(1, sizeof *st);
    struct MHD_Response *r = NULL;
    if (st) {
        *st = (struct stream){.s = s, .j = j, .fd = conn_fd(c), .created = created};
        /* chat streams open with the assistant role, as OpenAI's do */
        if (!j->chat || put_event(st, srv_render_chunk(s, j, created, "", 0, NULL, 0, NULL, true)))
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st, stream_free);
    }
    if (!r) {
        if (st) free(st->buf);
        free(st);
        srv_job_release(s, j);
        struct srv_err e;
        srv_fail(&e, 500, NULL, "out of memory");
        return srv_send_error(s, c, ep, &e);
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    const enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    srv_metrics_request(&s->metrics, ep, 200);
    return ok;
}

int srv_generate(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                 const char *body, size_t len)
{
    struct srv_err e;
    json_t *b = NULL;
    if (!srv_parse_body(body, len, &b, &e)) return srv_send_error(s, c, ep, &e);
    struct srv_job *j = srv_job_new();
    if (!j) {
        json_decref(b);
        srv_fail(&e, 500, NULL, "out of memory");
        return srv_send_error(s, c, ep, &e);
    }
    const time_t created = time(NULL);
    j->t_arrival = srv_now();
    j->deadline = s->o.timeout_s > 0 ? j->t_arrival + s->o.timeout_s : 0;
    const bool ok = srv_parse_completion(s, b, ep == EP_CHAT, j, &e);
    json_decref(b);
    if (!ok || srv_submit(s, j, &e) != 0) {
        srv_job_release(s, j);
        return srv_send_error(s, c, ep, &e);
    }
    return j->stream ? start_stream(s, c, ep, j, created) : wait_whole(s, c, ep, j, created);
}
