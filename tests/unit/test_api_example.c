/* The README's C API example (examples/generate.c), with prompt ids instead of text
 * (the golden checkpoints have no tokenizer): load, CPU backend, engine, generate, and
 * the ids must be the transformers greedy continuation recorded in the golden. */
#include "check.h"
#include "mk/engine.h"

#include <jansson.h>
#include <sys/wait.h>

enum { N_GEN = 8 };

struct collected {
    int32_t ids[N_GEN];
    int n;
};

static bool collect(void *ctx, int req, const struct mk_token *t)
{
    struct collected *c = ctx;
    (void)req;
    if (c->n < N_GEN) c->ids[c->n++] = t->id;
    return true;
}

static void test_engine_greedy_matches_golden(void)
{
    const char *dir = "tests/data/goldens/qwen3_f32";
    char path[256];
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_error_t jerr;
    json_t *g = json_load_file(path, 0, &jerr);
    CHECKF(g != NULL, "%s: %s", path, jerr.text);
    if (!g) return;
    json_t *p0 = json_array_get(json_object_get(g, "prompts"), 0);
    json_t *jprompt = json_object_get(p0, "ids"), *jgreedy = json_object_get(p0, "greedy");
    int32_t prompt[64];
    int n_prompt = (int)json_array_size(jprompt);
    CHECK(n_prompt >= 1 && n_prompt <= 64 && json_array_size(jgreedy) >= N_GEN);
    for (int i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t)json_integer_value(json_array_get(jprompt, (size_t)i));

    struct mk_model *m = NULL;
    struct mk_backend *be = NULL;
    struct mk_engine *e = NULL;
    snprintf(path, sizeof path, "%s/ckpt", dir);
    CHECK_OK(mk_model_load(path, &m));
    if (m) CHECK_OK(mk_backend_cpu_new(m, &be));
    if (be) CHECK_OK(mk_engine_new(m, NULL, be, &e));
    if (e) {
        struct mk_request req = {.prompt = prompt, .n_prompt = n_prompt, .max_tokens = N_GEN,
                                 .ignore_eos = true};
        struct collected c = {0};
        enum mk_finish finish = MK_FINISH_NONE;
        CHECK_OK(mk_engine_generate(e, &req, 1, collect, &c, &finish));
        CHECK(c.n == N_GEN && finish == MK_FINISH_LENGTH);
        for (int i = 0; i < c.n; i++) {
            int32_t want = (int32_t)json_integer_value(json_array_get(jgreedy, (size_t)i));
            CHECKF(c.ids[i] == want, "token %d: got %d, transformers %d", i, c.ids[i], want);
        }
    }
    mk_engine_free(e);
    mk_model_free(m);
    json_decref(g);
}

static void test_example_compiles_against_public_headers(void)
{
    /* examples/generate.c is compiled by the Makefile's `examples` target, which
     * test-build depends on; its binary must exist and refuse bad usage with exit 2. */
    const char *build = getenv("MK_BUILD") ? getenv("MK_BUILD") : "build";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/examples/generate >/dev/null 2>&1", build);
    int rc = system(cmd);
    CHECKF(rc != -1 && WEXITSTATUS(rc) == 2, "examples/generate without arguments: status %d", rc);
}

int main(void)
{
    RUN(test_engine_greedy_matches_golden);
    RUN(test_example_compiles_against_public_headers);
    CHECK_EXIT();
}
