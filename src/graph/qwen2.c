/* Qwen2 / Qwen2.5 (transformers Qwen2ForCausalLM): the Llama decoder with biases on
 * the q, k and v projections. The Llama builder already reads the biases when
 * cfg.qkv_bias is set, so the graph is the Llama graph. */
#include "mk/graph.h"

void mk_graph_build_qwen2(struct mk_graph *g)
{
    mk_graph_build_llama(g);
}
