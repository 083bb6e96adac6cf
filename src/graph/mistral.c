/* Mistral (transformers MistralForCausalLM): the Llama decoder; sliding_window (when set)
 * limits ATTENTION to the last sliding_window positions, a detail of ATTENTION. */
#include "mk/graph.h"

void mk_graph_build_mistral(struct mk_graph *g)
{
    const struct mk_config *c = &g->cfg;
    uint32_t D = (uint32_t)c->head_dim, q_rows = (uint32_t)c->n_heads * D;
    uint32_t kv_rows = (uint32_t)c->n_kv_heads * D, H = (uint32_t)c->hidden_size;
    uint32_t I = (uint32_t)c->intermediate_size;

    int x = mk_g_embed(g, "model.embed_tokens.weight");
    for (g->layer = 0; g->layer < c->n_layers; g->layer++) {
        int h = mk_g_rmsnorm(g, x, mk_g_lw(g, "input_layernorm.weight"));
        int q = mk_g_linear(g, "q", h, mk_g_lw(g, "self_attn.q_proj.weight"),
                            c->qkv_bias ? mk_g_lw(g, "self_attn.q_proj.bias") : NULL, q_rows);
        int k = mk_g_linear(g, "k", h, mk_g_lw(g, "self_attn.k_proj.weight"),
                            c->qkv_bias ? mk_g_lw(g, "self_attn.k_proj.bias") : NULL, kv_rows);
        int v = mk_g_linear(g, "v", h, mk_g_lw(g, "self_attn.v_proj.weight"),
                            c->qkv_bias ? mk_g_lw(g, "self_attn.v_proj.bias") : NULL, kv_rows);
        q = mk_g_rope(g, q);
        k = mk_g_rope(g, k);
        mk_g_kv_append(g, k, v);
        int a = mk_g_attention(g, q);
        x = mk_g_add(g, x, mk_g_linear(g, "o", a, mk_g_lw(g, "self_attn.o_proj.weight"), NULL, H));

        h = mk_g_rmsnorm(g, x, mk_g_lw(g, "post_attention_layernorm.weight"));
        int gate = mk_g_linear(g, "gate", h, mk_g_lw(g, "mlp.gate_proj.weight"), NULL, I);
        int up = mk_g_linear(g, "up", h, mk_g_lw(g, "mlp.up_proj.weight"), NULL, I);
        int m = mk_g_silu_mul(g, gate, up);
        x = mk_g_add(g, x, mk_g_linear(g, "down", m, mk_g_lw(g, "mlp.down_proj.weight"), NULL, H));
    }
    g->layer = -1;
    int h = mk_g_rmsnorm(g, x, "model.norm.weight");
    mk_g_sample(g, mk_g_linear(g, "logits", h, c->tie_word_embeddings
                                                   ? "model.embed_tokens.weight"
                                                   : "lm_head.weight",
                               NULL, (uint32_t)c->vocab_size));
}
