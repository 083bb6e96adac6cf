/* The bounded job queue and the scheduler thread, the only thread that touches the
 * engine. Job ownership: the connection thread holds one reference from srv_job_new
 * until srv_job_release; the scheduler holds another while a job is in a running batch.
 * Whoever drops the last one frees the job. Everything shared is under s->mu. */
#include "server/server_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* A waiting connection thread wakes at once on news or a hang-up (it polls both); this
 * bound only paces its checks of deadlines and of the server stopping. */
enum { WAIT_SLICE_MS = 50 };

double srv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct srv_job *srv_job_new(void)
{
    struct srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (j->efd < 0) {
        free(j);
        return NULL;
    }
    j->refs = 1;
    j->logprobs = -1;
    return j;
}

static void job_free(struct srv_job *j)
{
    mk_ids_free(&j->prompt);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->text);
    free(j->toks);
    close(j->efd);
    free(j);
}

/* Drop one reference; caller holds s->mu. */
static void job_unref(struct srv_job *j)
{
    MK_ASSERT(j->refs > 0);
    if (--j->refs == 0) job_free(j);
}

static void queue_remove(struct mk_server *s, struct srv_job *j)
{
    for (struct srv_job **p = &s->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        if (*p != j) continue;
        *p = j->next;
        if (s->tail == j) s->tail = prev;
        j->next = NULL;
        s->n_queued--;
        return;
    }
    MK_ASSERTF(0, "job not in the queue");
}

/* Wake j's connection thread. */
static void job_notify(struct srv_job *j)
{
    const uint64_t one = 1;
    const ssize_t n = write(j->efd, &one, sizeof one); /* fails only when the counter is full */
    (void)n;
}

/* Mark j done with reason `end`; caller holds s->mu. */
static void job_finish(struct mk_server *s, struct srv_job *j, enum srv_end end)
{
    j->state = JOB_DONE;
    j->end = end;
    j->safe_len = j->text_len;
    job_notify(j);
    srv_metrics_job(&s->metrics, j);
}

int srv_submit(struct mk_server *s, struct srv_job *j, struct srv_err *e)
{
    int status = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->ready || s->stopping) {
        status = 503;
        srv_fail(e, 503, NULL, "the model is not ready");
    } else if (s->n_queued >= s->o.max_queue) {
        status = 429;
        srv_fail(e, 429, NULL, "the request queue is full (%d waiting); retry later", s->n_queued);
    } else {
        j->id = ++s->next_id;
        j->state = JOB_QUEUED;
        if (s->tail) s->tail->next = j;
        else s->head = j;
        s->tail = j;
        s->n_queued++;
        pthread_cond_signal(&s->sched_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return status;
}

void srv_job_release(struct mk_server *s, struct srv_job *j)
{
    pthread_mutex_lock(&s->mu);
    if (j->state == JOB_QUEUED) {
        queue_remove(s, j);
        job_finish(s, j, END_CANCELLED);
    } else if (j->state == JOB_RUNNING) {
        j->cancel = true;
    }
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

static bool has_news(const struct srv_job *j, size_t seen_len, int seen_toks)
{
    return j->state == JOB_DONE || j->safe_len != seen_len || j->n_toks != seen_toks;
}

/* Sleep until j's eventfd is signalled, the peer on fd hangs up (returns false), or
 * WAIT_SLICE_MS pass. */
static bool sleep_on(struct srv_job *j, int fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLRDHUP}, {.fd = j->efd, .events = POLLIN}};
    const int r = poll(p, 2, WAIT_SLICE_MS);
    if (r <= 0) return r == 0 || errno == EINTR;
    if (p[1].revents & POLLIN) {
        uint64_t v;
        const ssize_t n = read(j->efd, &v, sizeof v); /* resets the counter */
        (void)n;
    }
    return !(p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

bool srv_job_wait(struct mk_server *s, struct srv_job *j, int fd, size_t *seen_len,
                  int *seen_toks, bool *done)
{
    for (bool alive = true;; alive = sleep_on(j, fd)) {
        pthread_mutex_lock(&s->mu);
        if (!alive || s->stopping) {
            if (j->state == JOB_RUNNING) j->cancel = true;
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        if (j->state == JOB_QUEUED && j->deadline > 0 && srv_now() > j->deadline) {
            queue_remove(s, j);
            job_finish(s, j, END_TIMEOUT);
        }
        if (has_news(j, *seen_len, *seen_toks)) {
            *seen_len = j->safe_len;
            *seen_toks = j->n_toks;
            *done = j->state == JOB_DONE;
            pthread_mutex_unlock(&s->mu);
            return true;
        }
        pthread_mutex_unlock(&s->mu);
    }
}

bool srv_job_view(struct mk_server *s, struct srv_job *j, int from, struct srv_view *v)
{
    *v = (struct srv_view){0};
    pthread_mutex_lock(&s->mu);
    v->done = j->state == JOB_DONE;
    int n = 0;
    while (from + n < j->n_toks && (v->done || j->toks[from + n].end <= j->safe_len)) n++;
    bool ok = true;
    if (n > 0) {
        const size_t a = j->toks[from].start, b = j->toks[from + n - 1].end;
        v->toks = malloc((size_t)n * sizeof *v->toks);
        v->text = malloc(b - a + 1);
        ok = v->toks && v->text;
        if (ok) {
            memcpy(v->toks, j->toks + from, (size_t)n * sizeof *v->toks);
            memcpy(v->text, j->text + a, b - a);
            v->text_at = a;
            v->n = n;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok) srv_view_free(v);
    return ok;
}

void srv_view_free(struct srv_view *v)
{
    free(v->toks);
    free(v->text);
    *v = (struct srv_view){0};
}

/* ---- the token callback ------------------------------------------------------------ */

static bool grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool append_text(struct srv_job *j, const char *t, size_t n)
{
    if (j->text_len + n + 1 > j->text_cap) {
        size_t cap = j->text_cap ? j->text_cap : 256;
        while (cap < j->text_len + n + 1) cap *= 2;
        char *p = realloc(j->text, cap);
        if (!p) return false;
        j->text = p;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, t, n);
    j->text_len += n;
    j->text[j->text_len] = '\0';
    return true;
}

/* Earliest match of a stop string that ends in the new text [from, text_len); SIZE_MAX
 * when none. */
static size_t find_stop(const struct srv_job *j, size_t from)
{
    size_t best = SIZE_MAX;
    for (int i = 0; i < j->n_stops; i++) {
        const size_t n = strlen(j->stops[i]);
        const size_t at = from >= n - 1 ? from - (n - 1) : 0;
        if (j->text_len < at + n) continue;
        const char *p = memmem(j->text + at, j->text_len - at, j->stops[i], n);
        if (p && (size_t)(p - j->text) < best) best = (size_t)(p - j->text);
    }
    return best;
}

/* Bytes at the end of the text that begin some stop string and so must wait. */
static size_t held_back(const struct srv_job *j)
{
    size_t held = 0;
    for (int i = 0; i < j->n_stops; i++) {
        const size_t n = strlen(j->stops[i]);
        for (size_t k = n - 1 < j->text_len ? n - 1 : j->text_len; k > held; k--)
            if (!memcmp(j->text + j->text_len - k, j->stops[i], k)) {
                held = k;
                break;
            }
    }
    return held;
}

/* Record token t in j; caller holds s->mu. False: stop generating j (j->why says why). */
static bool add_token(struct srv_job *j, const struct mk_token *t, double now)
{
    if (!grow((void **)&j->toks, &j->toks_cap, j->n_toks + 1, sizeof *j->toks) ||
        !append_text(j, t->text, t->text_len)) {
        snprintf(j->err, sizeof j->err, "out of memory");
        j->why = END_ERROR;
        return false;
    }
    struct srv_tok *k = &j->toks[j->n_toks++];
    *k = (struct srv_tok){.id = t->id, .logprob = t->logprob, .n_top = t->n_top,
                          .start = j->text_len - t->text_len, .end = j->text_len,
                          .hidden = t->finish == MK_FINISH_STOP && t->text_len == 0};
    memcpy(k->top_ids, t->top_ids, sizeof k->top_ids);
    memcpy(k->top_logprobs, t->top_logprobs, sizeof k->top_logprobs);
    if (j->n_toks == 1) j->t_first = now;
    j->t_last = now;
    const size_t cut = find_stop(j, k->start);
    if (cut != SIZE_MAX) {
        /* the stop string may begin in earlier, held-back tokens: clip them all */
        j->text_len = j->safe_len = cut;
        j->text[cut] = '\0';
        for (int i = j->n_toks - 1; i >= 0 && j->toks[i].end > cut; i--) {
            struct srv_tok *p = &j->toks[i];
            p->hidden = p->start >= cut;
            if (p->start > cut) p->start = cut;
            p->end = cut;
        }
        j->why = END_STOP;
        return false;
    }
    j->safe_len = t->finish != MK_FINISH_NONE ? j->text_len : j->text_len - held_back(j);
    return true;
}

struct batch {
    struct mk_server *s;
    struct srv_job *jobs[MK_MAX_BATCH];
};

static bool on_token(void *ctx, int req, const struct mk_token *t)
{
    struct batch *b = ctx;
    struct srv_job *j = b->jobs[req];
    const double now = srv_now();
    pthread_mutex_lock(&b->s->mu);
    bool go = add_token(j, t, now);
    if (go && (j->cancel || b->s->stopping)) {
        j->why = END_CANCELLED;
        go = false;
    } else if (go && j->deadline > 0 && now > j->deadline && t->finish == MK_FINISH_NONE) {
        j->why = END_TIMEOUT;
        go = false;
    }
    job_notify(j);
    pthread_mutex_unlock(&b->s->mu);
    return go;
}

/* ---- the scheduler thread --------------------------------------------------------- */

static enum srv_end end_of(const struct srv_job *j, enum mk_finish f)
{
    switch (f) {
    case MK_FINISH_STOP: return END_STOP;
    case MK_FINISH_LENGTH: return END_LENGTH;
    case MK_FINISH_CANCELLED: return j->why != END_NONE ? j->why : END_CANCELLED;
    case MK_FINISH_NONE: break;
    }
    return END_ERROR;
}

/* Take up to s->batch queued jobs (those past their deadline end here); caller holds
 * s->mu. */
static int take_batch(struct mk_server *s, struct batch *b)
{
    int n = 0;
    const double now = srv_now();
    while (s->head && n < s->batch) {
        struct srv_job *j = s->head;
        queue_remove(s, j);
        if (j->deadline > 0 && now > j->deadline) {
            job_finish(s, j, END_TIMEOUT);
            continue;
        }
        j->state = JOB_RUNNING;
        j->refs++;
        b->jobs[n++] = j;
    }
    s->n_running = n;
    return n;
}

static void run_batch(struct mk_server *s, struct batch *b, int n)
{
    struct mk_request reqs[MK_MAX_BATCH] = {{0}};
    enum mk_finish finish[MK_MAX_BATCH] = {MK_FINISH_NONE};
    for (int i = 0; i < n; i++) reqs[i] = b->jobs[i]->req;
    const enum mk_status st = mk_engine_generate(s->eng.engine, reqs, n, on_token, b, finish);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) {
        struct srv_job *j = b->jobs[i];
        if (st != MK_OK && finish[i] == MK_FINISH_NONE)
            snprintf(j->err, sizeof j->err, "generation failed: %s", mk_errmsg());
        job_finish(s, j, end_of(j, finish[i]));
        job_unref(j);
    }
    s->n_running = 0;
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg)
{
    struct mk_server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (!s->head) {
            pthread_cond_wait(&s->sched_cv, &s->mu);
            continue;
        }
        struct batch b = {.s = s};
        const int n = take_batch(s, &b);
        pthread_mutex_unlock(&s->mu);
        if (n > 0) run_batch(s, &b, n);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

enum mk_status srv_sched_start(struct mk_server *s)
{
    if (pthread_create(&s->sched, NULL, sched_main, s) != 0)
        return mk_error(MK_ERR_NOMEM, "serve: cannot start the scheduler thread");
    s->sched_started = true;
    return MK_OK;
}

/* Caller has set s->stopping (so running batches cancel at their next token). */
void srv_sched_stop(struct mk_server *s)
{
    if (!s->sched_started) return;
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->sched_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->sched, NULL);
    s->sched_started = false;
}
