#!/usr/bin/env python3
"""PyTorch + transformers decode baseline on a checkpoint directory (e.g. one written by
`mk synth`): batch 1, a CTX-token random prompt, then TOKENS greedy decode steps, timed
as ms/token (tg128 with the defaults), two ways:

  torch-eager            the model's forward called once per token with a DynamicCache,
                         as a plain Python greedy loop (what `generate()` does eagerly);
  torch-compile-graphs   a StaticCache decode step compiled with torch.compile (default
                         mode max-autotune-no-cudagraphs) and captured by hand into ONE
                         torch.cuda.CUDAGraph that also advances the token and position
                         buffers in place; each token is exactly one g.replay(). Manual
                         capture cannot silently fall back to eager the way mode=
                         "reduce-overhead" does when an input is mutated: a host sync or a
                         recompile inside the capture raises. Replays are counted and the
                         position counter read back to prove every step ran on the GPU.

Prefill is not timed. Each repetition starts from the same prompt cache; the median of
--reps repetitions after --warmup is reported. A table goes to stdout, and with --jsonl
one JSON object per system is appended:
  {"system", "model", "test": "tg128", "batch": 1, "ctx": 64, "ms", "device", "date",
   "commit"}

Needs torch and transformers 5 (the GPU image has torch 2.11 + transformers 5.17). With
--device cpu it runs the eager loop and an uncompiled static-cache loop only (no CUDA
graphs), to check model construction on a machine without a GPU.
"""
import argparse
import datetime
import inspect
import json
import os
import statistics
import subprocess
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--name", help="model name in the results (default: the directory name, "
                   "e.g. qwen3-0.6b)")
    p.add_argument("--ctx", type=int, default=64, help="prompt tokens (default 64)")
    p.add_argument("--tokens", type=int, default=128, help="decode steps timed (default 128)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions (default 2)")
    p.add_argument("--systems", default="torch-eager,torch-compile-graphs",
                   help="comma-separated subset of torch-eager,torch-compile-graphs")
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                   choices=["default", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode of the static-cache step (graphs are captured "
                   "by hand either way)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--seed", type=int, default=0, help="prompt token ids seed")
    p.add_argument("--jsonl", help="append one JSON line per system to this file")
    p.add_argument("--commit", help="commit id recorded in the results (default: git HEAD)")
    a = p.parse_args(argv)
    for flag in ("ctx", "tokens", "reps"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for s in a.systems:
        if s not in ("torch-eager", "torch-compile-graphs"):
            p.error(f"--systems: unknown system '{s}'")
    if not os.path.isfile(os.path.join(a.model_dir, "config.json")):
        p.error(f"{a.model_dir}: no config.json")
    a.name = a.name or os.path.basename(os.path.normpath(a.model_dir))
    return a


def git_commit(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(["git", "-C", here, "rev-parse", "--short=7", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_model(torch, a):
    from transformers import AutoModelForCausalLM
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    # No device_map: that needs `accelerate`, which the GPU image may lack.
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype,
                                                 attn_implementation="sdpa")
    model.to(a.device).eval()
    model.generation_config.do_sample = False  # the release's sampling defaults do not apply
    return model


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def takes_cache_position(model):
    """Older transformers pass the write position as `cache_position`; newer ones keep a
    device-side counter in each StaticLayer (cumulative_length). Support both."""
    return "cache_position" in inspect.signature(model.forward).parameters


def greedy(logits):
    return logits[:, -1, :].argmax(dim=-1, keepdim=True)


# ---- torch-eager ---------------------------------------------------------------------

def run_eager(torch, model, prompt, a, keep_logits=False):
    """One timed repetition: prefill (untimed) then a.tokens eager forward calls.
    Returns (ms/token, the logits of each step when keep_logits, else None)."""
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)  # the model makes its DynamicCache
        cache, tok = out.past_key_values, greedy(out.logits)
        sync(torch, a.device)
        kept = [] if keep_logits else None
        t0 = time.perf_counter()
        for _ in range(a.tokens):
            out = model(input_ids=tok, past_key_values=cache, use_cache=True)
            cache, tok = out.past_key_values, greedy(out.logits)
            if keep_logits:
                kept.append(out.logits[:, -1].float().clone())
        sync(torch, a.device)
    return (time.perf_counter() - t0) * 1e3 / a.tokens, kept


# ---- torch-compile-graphs ------------------------------------------------------------

class StaticDecoder:
    """A StaticCache holding the prompt, plus device buffers for the current token and
    position that one decode step reads and advances in place."""

    def __init__(self, torch, model, prompt, a):
        from transformers import StaticCache
        self.torch, self.model, self.a = torch, model, a
        self.P = prompt.shape[1]
        self.cache = StaticCache(config=model.config, max_cache_len=self.P + a.tokens + 8)
        self.with_cache_position = takes_cache_position(model)
        dev = prompt.device
        with torch.no_grad():
            kw = {"cache_position": torch.arange(self.P, device=dev)} if self.with_cache_position else {}
            logits = model(input_ids=prompt, past_key_values=self.cache, use_cache=True,
                           position_ids=torch.arange(self.P, device=dev)[None], **kw).logits
            self.first = greedy(logits).clone()
        self.tok = self.first.clone()                                     # [1, 1] int64
        self.pos = torch.full((1, 1), self.P, dtype=torch.long, device=dev)  # [1, 1] position
        self.out = torch.zeros((1, a.tokens + 8), dtype=torch.long, device=dev)  # tokens made

    def reset(self):
        """Back to "prompt cached, nothing generated": later KV slots are masked by
        position, so they need no clearing."""
        self.tok.copy_(self.first)
        self.pos.fill_(self.P)
        for layer in getattr(self.cache, "layers", []):
            n = getattr(layer, "cumulative_length", None)
            if self.torch.is_tensor(n):
                n.fill_(self.P)

    def logits(self, tok, pos):
        kw = {"cache_position": pos[0]} if self.with_cache_position else {}
        return self.model(input_ids=tok, position_ids=pos, past_key_values=self.cache,
                          use_cache=True, **kw).logits

    def forward_step(self, tok, pos):
        return greedy(self.logits(tok, pos))

    def step(self, fn):
        """One decode step through `fn`, then the in-place advance (captured with it)."""
        nxt = fn(self.tok, self.pos)
        self.out.index_copy_(1, self.pos[0] - self.P, nxt)
        self.tok.copy_(nxt)
        self.pos.add_(1)


def run_static_cpu(torch, model, prompt, a, eager_logits, log):
    """CPU check of the static-cache driving (positions, reset, in-place advance) without
    compile or graphs: in fp32 every step's logits must equal the eager loop's. (Tokens
    alone prove little: a random tied model mostly repeats its input token.)"""
    d = StaticDecoder(torch, model, prompt, a)
    with torch.no_grad():
        for _ in range(2):  # twice: the second run checks that reset() restores the state
            d.reset()
            worst = 0.0
            t0 = time.perf_counter()
            for i in range(a.tokens):
                logits = d.logits(d.tok, d.pos)
                worst = max(worst, float((logits[:, -1].float() - eager_logits[i]).abs().max()))
                d.step(lambda tok, pos, x=logits: greedy(x))
            ms = (time.perf_counter() - t0) * 1e3 / a.tokens
            if int(d.pos.item()) != d.P + a.tokens:
                raise RuntimeError("static loop lost its position")
            log(f"  static-cache logits vs eager: max |diff| {worst:.2e} over {a.tokens} steps")
            if worst > 1e-3:
                raise RuntimeError("static-cache decode diverges from the eager loop")
    return [ms]


def run_compile_graphs(torch, model, prompt, a, log):
    d = StaticDecoder(torch, model, prompt, a)
    compiled = torch.compile(d.forward_step, mode=a.compile_mode, dynamic=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        # Compile and autotune outside the capture, on a side stream as capture requires.
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                d.reset()
                d.step(compiled)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        log(f"  compiled ({a.compile_mode}) in {time.perf_counter() - t0:.1f} s")
        d.reset()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            d.step(compiled)
        torch.cuda.synchronize()

        replays = 0
        times = []
        for rep in range(a.warmup + a.reps):
            d.reset()
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(a.tokens):
                g.replay()
            torch.cuda.synchronize()
            replays += a.tokens
            if rep >= a.warmup:
                times.append((time.perf_counter() - t) * 1e3 / a.tokens)
            # Proof that the graph, not a stale copy, advanced the state every step.
            pos = int(d.pos.item())
            if pos != d.P + a.tokens:
                raise RuntimeError(f"CUDA graph replay did not advance: position {pos}, "
                                   f"expected {d.P + a.tokens}")
        toks = d.out[0, :a.tokens].tolist()

        # Same tokens as the eager static-cache step? (Informational: bf16 kernels of the
        # compiled and eager paths differ, and random weights give near-tied logits.)
        d.reset()
        for _ in range(min(8, a.tokens)):
            d.step(d.forward_step)
        ref = d.out[0, :min(8, a.tokens)].tolist()
    same = sum(x == y for x, y in zip(toks, ref))
    log(f"  {replays} graph replays; first {len(ref)} tokens match eager static: {same}/{len(ref)}")
    return times


# ---- main -------------------------------------------------------------------------------

def main(argv=None):
    a = parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("torch_decode.py: torch is not installed (run it on the GPU image)")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_decode.py: no CUDA device (use --device cpu for a construction check)")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    torch.manual_seed(a.seed)
    model = load_model(torch, a)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(a.seed)
    prompt = torch.randint(0, vocab, (1, a.ctx), generator=gen).to(a.device)
    device_name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    log(f"{a.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params on "
        f"{device_name}, torch {torch.__version__}")

    results = []
    for system in a.systems:
        if system == "torch-eager":
            log(f"{system}:")
            times = [run_eager(torch, model, prompt, a)[0] for _ in range(a.warmup + a.reps)]
            times = times[a.warmup:]
        elif a.device == "cpu":  # not what the name promises: say so in the results
            system = "torch-static-cpu-check"
            log(f"{system}:")
            eager_logits = run_eager(torch, model, prompt, a, keep_logits=True)[1]
            times = run_static_cpu(torch, model, prompt, a, eager_logits, log)
        else:
            log(f"{system}:")
            times = run_compile_graphs(torch, model, prompt, a, log)
        results.append((system, statistics.median(times), times))

    test = f"tg{a.tokens}"
    print(f"| system | model | test | ctx | ms/token (median of {a.reps}) | tok/s |")
    print("|---|---|---|---|---|---|")
    for system, ms, _ in results:
        print(f"| {system} | {a.name} | {test} | {a.ctx} | {ms:.3f} | {1e3 / ms:.1f} |")
    if a.jsonl:
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        commit = git_commit(a.commit)
        with open(a.jsonl, "a") as f:
            for system, ms, _ in results:
                f.write(json.dumps({"system": system, "model": a.name, "test": test, "batch": 1,
                                    "ctx": a.ctx, "ms": round(ms, 4), "device": device_name,
                                    "date": date, "commit": commit}) + "\n")


if __name__ == "__main__":
    main()
