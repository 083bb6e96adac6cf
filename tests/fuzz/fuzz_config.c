/* libFuzzer target: config.json then generation_config.json parsing on arbitrary bytes
 * (the same bytes as both). On MK_OK the config must satisfy the invariants the rest of
 * the engine relies on (heads divide, even head_dim, ids inside the vocabulary). */
#include "mk/load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const struct mk_config *c)
{
    MK_ASSERT(c->vocab_size >= 1 && c->hidden_size >= 1 && c->intermediate_size >= 1);
    MK_ASSERT(c->n_layers >= 1 && c->n_heads >= 1 && c->n_kv_heads >= 1);
    MK_ASSERT(c->n_heads % c->n_kv_heads == 0 && c->head_dim > 0 && c->head_dim % 2 == 0);
    MK_ASSERT(c->rms_norm_eps > 0 && c->rms_norm_eps < 1 && c->rope_theta > 0);
    MK_ASSERT(c->n_eos >= 0 && c->n_eos <= MK_MAX_EOS);
    for (int i = 0; i < c->n_eos; i++)
        MK_ASSERT(c->eos_token_ids[i] >= 0 && c->eos_token_ids[i] < c->vocab_size);
    MK_ASSERT(c->bos_token_id >= -1 && c->bos_token_id < c->vocab_size);
    MK_ASSERT(mk_config_step_bytes(c) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mk_config c;
    if (mk_config_parse((const char *)data, size, "fuzz/config.json", &c) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0');
        return 0;
    }
    check_config(&c);
    struct mk_gen_config g;
    if (mk_gen_config_parse((const char *)data, size, "fuzz/generation_config.json", &c, &g) == MK_OK) {
        check_config(&c);
        MK_ASSERT(g.top_p > 0 && g.top_p <= 1 && g.temperature >= 0 && g.top_k >= 0);
    }
    return 0;
}
