/* Mistral (transformers MistralForCausalLM): the Llama decoder; sliding_window (when
 * set) limits ATTENTION to the last sliding_window positions, a detail of the ATTENTION
 * op carried by the config, so the graph is the Llama graph. */
#include "mk/graph.h"

void mk_graph_build_mistral(struct mk_graph *g)
{
    mk_graph_build_llama(g);
}
