/* The smallest complete use of the C API: load a checkpoint, make an engine on the CPU
 * reference (or the GPU megakernel), stream 32 greedy tokens of a text prompt.
 *   cc -Iinclude examples/generate.c build/libmk.a $(LDLIBS) -o generate
 *   ./generate DIR "The capital of France is"
 * The same calls with prompt ids and no tokenizer run in tests/unit/test_api_example.c. */
#include "mk/engine.h"
#include "mk/runtime.h"

#include <stdio.h>

static bool print_token(void *ctx, int req, const struct mk_token *t)
{
    (void)ctx, (void)req;
    fwrite(t->text, 1, t->text_len, stdout); /* whole UTF-8 characters only */
    fflush(stdout);
    return true;                             /* false would cancel this request */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CHECKPOINT_DIR PROMPT\n", argv[0]);
        return 2;
    }
    struct mk_model *m = NULL;
    struct mk_tokenizer *tok = NULL;
    struct mk_backend *be = NULL;
    struct mk_engine *e = NULL;
    struct mk_ids prompt = {0};
    enum mk_status s = mk_model_load(argv[1], &m);
    if (s == MK_OK) s = mk_tokenizer_load(argv[1], &tok);
    if (s == MK_OK && mk_backend_gpu_new(m, 1, 4096, &be) != MK_OK)
        s = mk_backend_cpu_new(m, &be);      /* no GPU: the CPU reference */
    if (s == MK_OK) s = mk_engine_new(m, tok, be, &e);
    if (s == MK_OK) s = mk_prompt_text(tok, argv[2], &prompt);
    if (s == MK_OK) {
        struct mk_request req = {.prompt = prompt.ids, .n_prompt = (int)prompt.n,
                                 .max_tokens = 32};  /* zeroed sampling = greedy */
        enum mk_finish finish;
        s = mk_engine_generate(e, &req, 1, print_token, NULL, &finish);
        if (s == MK_OK) printf("\n[finish: %s]\n", mk_finish_name(finish));
    }
    if (s != MK_OK) fprintf(stderr, "error: %s: %s\n", mk_status_name(s), mk_errmsg());
    mk_ids_free(&prompt);
    mk_engine_free(e);
    mk_tokenizer_free(tok);
    mk_model_free(m);
    return s == MK_OK ? 0 : 1;
}
