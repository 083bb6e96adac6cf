/* Server metrics and their Prometheus text exposition (format 0.0.4). Histograms keep
 * per-bucket counts and are made cumulative when printed. */
#include "server/server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int statuses[SRV_N_STATUS - 1] = {200, 400, 401, 404, 405, 413, 429, 499, 500, 503};
static const char *const endpoints[EP_COUNT] = {
    "/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize", "/detokenize", "/health",
    "/metrics", "other",
};

/* Upper bounds in seconds (vLLM's ranges, trimmed to SRV_N_BUCKETS). */
static const double ttft_le[SRV_N_BUCKETS] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                              0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};
static const double tpot_le[SRV_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025,
                                              0.03,  0.04,   0.05,  0.075,  0.1,  0.25,  0.5,  1.0};
static const double e2e_le[SRV_N_BUCKETS] = {0.01, 0.025, 0.05, 0.1,  0.25, 0.5,  1.0,   2.5,
                                             5.0,  10.0,  20.0, 30.0, 60.0, 120.0, 300.0, 600.0};

void srv_metrics_init(struct srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void srv_metrics_free(struct srv_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void srv_metrics_request(struct srv_metrics *m, enum srv_endpoint ep, int status)
{
    int k = SRV_N_STATUS - 1; /* "other" */
    for (int i = 0; i < SRV_N_STATUS - 1; i++)
        if (statuses[i] == status) k = i;
    pthread_mutex_lock(&m->mu);
    m->requests[ep][k]++;
    pthread_mutex_unlock(&m->mu);
}

static void observe(struct srv_hist *h, const double *le, double x)
{
    int b = 0;
    while (b < SRV_N_BUCKETS && x > le[b]) b++;
    h->counts[b]++;
    h->sum += x;
    h->n++;
}

void srv_metrics_job(struct srv_metrics *m, const struct srv_job *j)
{
    pthread_mutex_lock(&m->mu);
    m->finished[j->end]++;
    if (j->n_toks > 0) {
        m->prompt_tokens += (unsigned long long)j->req.n_prompt;
        m->generation_tokens += (unsigned long long)j->n_toks;
        observe(&m->ttft, ttft_le, j->t_first - j->t_arrival);
        observe(&m->e2e, e2e_le, j->t_last - j->t_arrival);
        if (j->n_toks > 1) observe(&m->tpot, tpot_le, (j->t_last - j->t_first) / (j->n_toks - 1));
    }
    pthread_mutex_unlock(&m->mu);
}

static void print_hist(FILE *f, const char *name, const char *help, const struct srv_hist *h, const double *le)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int b = 0; b < SRV_N_BUCKETS; b++) {
        cum += h->counts[b];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, le[b], cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, cum + h->counts[SRV_N_BUCKETS],
            name, h->sum, name, h->n);
}

static void print_requests(FILE *f, const struct srv_metrics *m)
{
    fputs("# HELP mk_requests_total HTTP requests answered, by endpoint and status.\n"
          "# TYPE mk_requests_total counter\n", f);
    for (int ep = 0; ep < EP_COUNT; ep++)
        for (int k = 0; k < SRV_N_STATUS; k++) {
            if (!m->requests[ep][k]) continue;
            char status[16];
            snprintf(status, sizeof status, k < SRV_N_STATUS - 1 ? "%d" : "other", statuses[k < SRV_N_STATUS - 1 ? k : 0]);
            fprintf(f, "mk_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n", endpoints[ep], status,
                    m->requests[ep][k]);
        }
}

char *srv_metrics_text(struct mk_server *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    pthread_mutex_lock(&s->mu);
    const int queued = s->n_queued, running = s->n_running;
    const bool ready = s->ready;
    pthread_mutex_unlock(&s->mu);
    struct srv_metrics *m = &s->metrics;
    pthread_mutex_lock(&m->mu);
    print_requests(f, m);
    fprintf(f, "# HELP mk_prompt_tokens_total Prompt tokens of finished generation requests.\n"
               "# TYPE mk_prompt_tokens_total counter\nmk_prompt_tokens_total %llu\n"
               "# HELP mk_generation_tokens_total Generated tokens.\n"
               "# TYPE mk_generation_tokens_total counter\nmk_generation_tokens_total %llu\n",
            m->prompt_tokens, m->generation_tokens);
    fputs("# HELP mk_request_finish_total Generation requests by finish reason.\n"
          "# TYPE mk_request_finish_total counter\n", f);
    for (int e = END_STOP; e <= END_ERROR; e++)
        fprintf(f, "mk_request_finish_total{reason=\"%s\"} %llu\n", srv_end_name((enum srv_end)e), m->finished[e]);
    print_hist(f, "mk_time_to_first_token_seconds", "Arrival to first generated token.", &m->ttft, ttft_le);
    print_hist(f, "mk_time_per_output_token_seconds", "Per request: (last - first token time) / (tokens - 1).",
               &m->tpot, tpot_le);
    print_hist(f, "mk_e2e_request_latency_seconds", "Arrival to last generated token.", &m->e2e, e2e_le);
    pthread_mutex_unlock(&m->mu);
    fprintf(f, "# HELP mk_queue_depth Requests waiting for a batch.\n# TYPE mk_queue_depth gauge\nmk_queue_depth %d\n"
               "# HELP mk_running_requests Requests in the running batch.\n# TYPE mk_running_requests gauge\n"
               "mk_running_requests %d\n# HELP mk_ready 1 once the model is loaded and warmed up.\n"
               "# TYPE mk_ready gauge\nmk_ready %d\n", queued, running, ready ? 1 : 0);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
