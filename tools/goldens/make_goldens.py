#!/usr/bin/env python3
"""Golden fixtures for the CPU reference: tiny random-weight checkpoints of every family,
written by transformers' own save_pretrained, with transformers' logits for fixed prompts
and greedy continuations. Needs torch + transformers (run once where they are installed;
the fixtures are committed so the tests need neither).

    python3 tools/goldens/make_goldens.py [--out tests/data/goldens] [--only NAME]

The output is deterministic: a rerun with the same torch/transformers rewrites every file
byte for byte (checked with torch 2.15.0, transformers 5.23.0).

For each model NAME it writes
    NAME/ckpt/        config.json, generation_config.json, model.safetensors
    NAME/golden.json  versions, prompts, greedy ids and top-5 log-probs per step
    NAME/logits.safetensors  float32 tensors:
        prompt{i}        [len_i, V]  logits at every prompt position
        gen{i}           [STEPS, V]  logits of each greedy step (only for FULL_GEN_PROMPT)
      and for bf16 checkpoints, the same computed by transformers in bf16 as
        bf16.prompt{i}   [len_i, V]  (native bf16 activations, like torch_dtype=bfloat16)
The fp32 logits of a bf16 checkpoint are transformers' forward in fp32 on the bf16
weights (from_pretrained(dtype=float32)), which the fp32 reference must match to fp32 rounding; the
native bf16 logits show the size of bf16 activation rounding.

Sizes are deliberately odd (vocab 256 but hidden 48 / 40 / 32, 6 or 4 query heads over 2 KV
heads, head_dim 8 or 16 with Nq*D != hidden for Qwen3, intermediate 80) and the weights
are drawn wider than transformers' init (std 0.2 instead of 0.02, norms 1 +- 0.2, random
biases) so logits spread over several units and greedy choices are not near-ties.
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from safetensors.torch import save_file

STEPS = 32
FULL_GEN_PROMPT = 2
PROMPTS = [
    [7],
    [1, 17, 42, 99, 5, 200],
    [1, 250, 3, 3, 64, 128, 11, 90, 31, 77, 8, 199, 46],
]
COMMON = dict(vocab_size=256, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
              num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=2048,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def models():
    """(name, config class, model class, config kwargs, dtype)."""
    T = transformers
    llama3_rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 1024}
    qwen3 = dict(COMMON, hidden_size=40, num_attention_heads=4, head_dim=16,
                 tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    return [
        # llama3 scaling with D=8: inv_freq 1, .1, .01, .001 -> wavelengths 6.3 and 63
        # kept, 628 interpolated (between 1024/4 and 1024/1), 6283 divided by 8.
        ("llama3_f32", T.LlamaConfig, T.LlamaForCausalLM, dict(COMMON, rope_parameters=llama3_rope), torch.float32),
        # Mistral with a sliding window shorter than prompt + continuation.
        ("mistral_f32", T.MistralConfig, T.MistralForCausalLM,
         dict(COMMON, sliding_window=8, head_dim=8, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         torch.float32),
        ("qwen2_f32", T.Qwen2Config, T.Qwen2ForCausalLM,
         dict(COMMON, use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         torch.float32),
        ("qwen3_f32", T.Qwen3Config, T.Qwen3ForCausalLM, qwen3, torch.float32),
        ("qwen3_bf16", T.Qwen3Config, T.Qwen3ForCausalLM, qwen3, torch.bfloat16),
        ("llama3_bf16", T.LlamaConfig, T.LlamaForCausalLM, dict(COMMON, rope_parameters=llama3_rope), torch.bfloat16),
        # Llama with default RoPE and tied embeddings (as Llama 3.2 1B), smaller to keep
        # the fixtures small: hidden 32, 4 query heads over 2 KV heads, head_dim 8.
        ("llama_f32", T.LlamaConfig, T.LlamaForCausalLM,
         dict(COMMON, hidden_size=32, num_attention_heads=4, intermediate_size=64, tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
         torch.float32),
    ]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


@torch.no_grad()
def greedy(model, prompt):
    """Prompt logits [n, V], then STEPS greedy steps with the KV cache: ids, step logits."""
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    prompt_logits = out.logits[0].float()
    past, last = out.past_key_values, out.logits[0, -1].float()
    ids, steps = [], []
    for _ in range(STEPS):
        steps.append(last)
        nxt = int(torch.argmax(last))  # first maximal index: ties -> lowest id
        ids.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past, last = out.past_key_values, out.logits[0, -1].float()
    return prompt_logits, ids, torch.stack(steps)


def top5(step_logits):
    lp = torch.log_softmax(step_logits.double(), dim=-1)
    out = []
    for row in lp:
        # Stable order: logprob descending, id ascending.
        order = sorted(range(row.numel()), key=lambda i: (-float(row[i]), i))[:5]
        out.append([[i, float(row[i])] for i in order])
    return out


def make(out_dir, name, cfg_cls, model_cls, kwargs, dtype, seed):
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    cfg = cfg_cls(**kwargs)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    randomize(model, seed)
    model = model.to(dtype)
    ckpt = os.path.join(d, "ckpt")
    model.save_pretrained(ckpt)

    # Reload from disk the way users do (from_pretrained keeps RoPE's inv_freq in fp32,
    # where model.to(bfloat16) would have rounded it to bf16).
    def load(dt):
        return model_cls.from_pretrained(ckpt, dtype=dt, attn_implementation="eager").eval()
    f32 = load(torch.float32)
    native = load(dtype) if dtype != torch.float32 else None
    tensors, prompts = {}, []
    for i, p in enumerate(PROMPTS):
        logits, ids, steps = greedy(f32, p)
        tensors[f"prompt{i}"] = logits.contiguous()
        if i == FULL_GEN_PROMPT:
            tensors[f"gen{i}"] = steps.contiguous()
        entry = {"ids": p, "greedy": ids, "top5": top5(steps)}
        if native is not None:
            b_logits, b_ids, _ = greedy(native, p)
            tensors[f"bf16.prompt{i}"] = b_logits.contiguous()
            entry["bf16_greedy"] = b_ids
        prompts.append(entry)
    save_file(tensors, os.path.join(d, "logits.safetensors"))
    meta = {
        "model": name, "family": cfg.model_type, "checkpoint_dtype": str(dtype).split(".")[-1],
        "seed": seed, "steps": STEPS, "full_gen_prompt": FULL_GEN_PROMPT,
        "attn_implementation": "eager",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "fp32_logits": "from_pretrained(dtype=float32): a bf16 checkpoint's weights upcast exactly",
        "prompts": prompts,
    }
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="write only this model (the others keep their files)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "goldens"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for seed, (name, cfg_cls, model_cls, kwargs, dtype) in enumerate(models(), start=1):
        if args.only and name != args.only:
            continue
        make(args.out, name, cfg_cls, model_cls, kwargs, dtype, seed)
        print("wrote", name)


if __name__ == "__main__":
    main()
