"""`mk generate` on the CPU reference: greedy continuations and per-step log-probs vs
the transformers goldens (tests/data/goldens), the --output json shape, stop at eos vs
--ignore-eos, sampled ids inside the top-k/top-p set computed with NumPy from the golden
logits, seeds, text streaming with a real tokenizer, exit codes."""
import json
import os
import shutil

import numpy as np
from safetensors.numpy import load_file

from mkt import BUILD, MK_FAST, ROOT, case, check, main, mk, tmpdir

GOLD = os.path.join(ROOT, "tests", "data", "goldens")
FP32_MODELS = ["llama3_f32", "llama_f32", "mistral_f32", "qwen2_f32", "qwen3_f32"]
TIE_GAP = 1e-3      # near-tie rule: logits closer than this may flip the greedy choice
LOGPROB_TOL = 2e-4  # |logprob - golden| (fp32 logits agree to ~1e-6 relative)


def golden(name):
    with open(os.path.join(GOLD, name, "golden.json")) as f:
        return json.load(f)


def ckpt(name):
    return os.path.join(GOLD, name, "ckpt")


def gen_json(model_dir, ids, *flags, binary=None):
    r = mk("generate", model_dir, "--prompt-ids", ",".join(map(str, ids)), "--output", "json",
           *flags, binary=binary)
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


@case
def greedy_matches_transformers():
    for name in FP32_MODELS:
        g = golden(name)
        for pi, p in enumerate(g["prompts"]):
            out = gen_json(ckpt(name), p["ids"], "-n", g["steps"], "--ignore-eos")
            check(out["prompt_ids"] == p["ids"], f"{name}: prompt_ids {out['prompt_ids']}")
            check(len(out["ids"]) == g["steps"] and out["finish_reason"] == "length", f"{name}: {out['finish_reason']}")
            for k, (ours, want) in enumerate(zip(out["ids"], p["greedy"])):
                step, gtop = out["steps"][k], p["top5"][k]
                if ours != want:
                    # Near-tie: each is the other's second choice, logits within TIE_GAP.
                    otop = step["top"]
                    check(otop[1][0] == want and otop[0][1] - otop[1][1] < TIE_GAP and
                          gtop[1][0] == ours and gtop[0][1] - gtop[1][1] < TIE_GAP,
                          f"{name} prompt {pi} step {k}: ours {ours}, golden {want}")
                    break
                check(abs(step["logprob"] - gtop[0][1]) < LOGPROB_TOL,
                      f"{name} prompt {pi} step {k}: logprob {step['logprob']} vs {gtop[0][1]}")
                for (oid, olp), (gid, glp) in zip(step["top"], gtop):
                    check(abs(olp - glp) < LOGPROB_TOL, f"{name} prompt {pi} step {k}: top {oid} {olp} vs {gid} {glp}")


@case
def json_output_shape():
    out = gen_json(ckpt("qwen2_f32"), [1, 17, 42], "-n", 4, "--ignore-eos")
    check(set(out) == {"prompt_ids", "ids", "text", "finish_reason", "steps"}, str(sorted(out)))
    check(out["prompt_ids"] == [1, 17, 42] and out["text"] == "", str(out))
    check(len(out["ids"]) == 4 and len(out["steps"]) == 4, str(out))
    for tid, step in zip(out["ids"], out["steps"]):
        check(set(step) == {"id", "logprob", "top"} and step["id"] == tid, str(step))
        check(isinstance(step["logprob"], float) and step["logprob"] <= 0, str(step))
        top = step["top"]
        check(len(top) == 5 and all(len(e) == 2 and isinstance(e[0], int) for e in top), str(top))
        lps = [e[1] for e in top]
        check(lps == sorted(lps, reverse=True), f"top not sorted: {top}")
        check(top[0][0] == tid and top[0][1] == step["logprob"], "greedy: the token is top-1")


def with_eos(name, eos, dest):
    """A copy of a golden checkpoint whose eos id is `eos`."""
    d = tmpdir(dest)
    for f in os.listdir(ckpt(name)):
        shutil.copy(os.path.join(ckpt(name), f), d)
    for f in ("config.json", "generation_config.json"):
        path = os.path.join(d, f)
        with open(path) as fh:
            cfg = json.load(fh)
        cfg["eos_token_id"] = eos
        with open(path, "w") as fh:
            json.dump(cfg, fh)
    return d


@case
def stops_at_eos_unless_ignored():
    g = golden("qwen3_f32")
    p = g["prompts"][2]
    greedy = p["greedy"]
    # The committed checkpoint's eos is 2, which the golden continuation reaches.
    first2 = greedy.index(2)
    out = gen_json(ckpt("qwen3_f32"), p["ids"], "-n", 32)
    check(out["ids"] == greedy[:first2 + 1] and out["finish_reason"] == "stop", str(out["ids"]))
    # A different eos id: it stops at that id's first occurrence, which is delivered.
    eos = greedy[5]
    check(greedy.index(eos) == 5, "fixture changed")
    d = with_eos("qwen3_f32", eos, "gen_eos")
    out = gen_json(d, p["ids"], "-n", 32)
    check(out["ids"] == greedy[:6] and out["finish_reason"] == "stop", str(out))
    out = gen_json(d, p["ids"], "-n", 32, "--ignore-eos")
    check(out["ids"] == greedy and out["finish_reason"] == "length", str(out))
    out = gen_json(d, p["ids"], "-n", 3)
    check(out["ids"] == greedy[:3] and out["finish_reason"] == "length", str(out))


def kept_set(logits, temperature, top_k, top_p):
    """The ids sample.h's steps 1-4 keep, computed directly."""
    z = logits.astype(np.float64) / temperature
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    cand = order[:top_k] if 0 < top_k < len(z) else order
    e = np.exp(z[cand] - z[cand[0]])
    before = np.concatenate([[0.0], np.cumsum(e)[:-1]])
    return {cand[i] for i in range(len(cand)) if before[i] < top_p * e.sum()}


@case
def sampling_stays_in_the_numpy_set():
    name = "qwen3_f32"
    p = golden(name)["prompts"][0]
    logits = load_file(os.path.join(GOLD, name, "logits.safetensors"))["prompt0"][-1]
    lse = np.log(np.exp(logits.astype(np.float64) - logits.max()).sum()) + logits.max()
    for t, k, top_p in [(0.8, 5, 1.0), (1.0, 0, 0.5), (1.5, 20, 0.9)]:
        keep = kept_set(logits, t, k, top_p)
        seen = set()
        for seed in range(24):
            out = gen_json(ckpt(name), p["ids"], "-n", 1, "--temperature", t, "--top-k", k,
                           "--top-p", top_p, "--seed", seed, binary=MK_FAST)
            tid = out["ids"][0]
            check(tid in keep, f"t={t} k={k} p={top_p} seed={seed}: {tid} not in {sorted(keep)}")
            check(abs(out["steps"][0]["logprob"] - (logits[tid] - lse)) < LOGPROB_TOL, "logprob")
            seen.add(tid)
        check(len(seen) >= min(2, len(keep)), f"t={t}: only {seen} in 24 seeds")


@case
def seeds_are_repeatable():
    ids = [1, 17, 42, 99]
    args = ("-n", 12, "--temperature", 1.0, "--ignore-eos")
    a = gen_json(ckpt("llama3_f32"), ids, *args, "--seed", 7)
    b = gen_json(ckpt("llama3_f32"), ids, *args, "--seed", 7)
    c = gen_json(ckpt("llama3_f32"), ids, *args, "--seed", 8)
    check(a == b, "same seed, different output")
    check(a["ids"] != c["ids"], "seeds 7 and 8 gave the same 12 tokens")


@case
def text_streams_with_a_tokenizer():
    from tokenizers import Tokenizer
    d = tmpdir("gen_qwen3_tiny")
    tok_dir = os.path.join(ROOT, "data", "tokenizers", "qwen3")
    r = mk("synth", "--arch", "qwen3", "--preset", "tiny", "--seed", 3, "--tokenizer", tok_dir,
           "--out", d, binary=MK_FAST)
    check(r.returncode == 0, r.stderr)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    prompt = "Hello, world! Ünïcödé 🙂"
    r = mk("generate", d, "--prompt", prompt, "-n", 12, "--ignore-eos", "--output", "json")
    check(r.returncode == 0, r.stderr)
    out = json.loads(r.stdout)
    check(out["prompt_ids"] == tok.encode(prompt).ids, f"{out['prompt_ids']}")
    check(out["text"] == tok.decode(out["ids"], skip_special_tokens=True), repr(out["text"]))
    # The sanitized binary ran once above; the fast one keeps the rest quick.
    r = mk("generate", d, "--prompt", prompt, "-n", 12, "--ignore-eos", binary=MK_FAST)
    check(r.returncode == 0 and r.stdout == out["text"] + "\n", repr(r.stdout))
    r = mk("generate", d, "--prompt", "Hi", "--chat", "--thinking", "off", "-n", 2, "--output", "json",
           binary=MK_FAST)
    check(r.returncode == 0, r.stderr)
    chat_ids = json.loads(r.stdout)["prompt_ids"]
    check(chat_ids[0] == tok.token_to_id("<|im_start|>") and chat_ids[-1] == tok.encode("\n\n").ids[-1], str(chat_ids))


@case
def exit_codes():
    c = ckpt("qwen3_f32")
    for args in (["--prompt-ids", "1"],  # no DIR
                 [c], [c, "--prompt", "x", "--prompt-ids", "1"],
                 [c, "--prompt-ids", "1,x"], [c, "--prompt-ids", "1,,2"], [c, "--prompt-ids", "-1"],
                 [c, "--prompt-ids", "1", "-n", "0"], [c, "--prompt-ids", "1", "--temperature", "-1"],
                 [c, "--prompt-ids", "1", "--top-p", "1.5"], [c, "--prompt-ids", "1", "--output", "xml"],
                 [c, "--prompt-ids", "1", "--backend", "tpu"], [c, "--prompt-ids", "1", "--chat"],
                 [c, "--prompt-ids", "1", "--frobnicate"], [c, "--prompt-ids"]):
        r = mk("generate", *args)
        check(r.returncode == 2 and r.stderr.strip(), f"{args}: exit {r.returncode}: {r.stderr}")
    for args, words in (([c, "--prompt", "hi"], "tokenizer.json"),
                        ([c, "--prompt-ids", "1,256"], "prompt[1]"),
                        ([c, "--prompt-ids", "1", "-n", "5000"], "context"),
                        ([os.path.join(ROOT, BUILD, "no-such-dir"), "--prompt-ids", "1"], "no-such-dir")):
        r = mk("generate", *args)
        check(r.returncode == 1 and words in r.stderr, f"{args}: exit {r.returncode}: {r.stderr}")
    if mk("gpu").returncode == 3:
        r = mk("generate", c, "--prompt-ids", "1", "--backend", "gpu")
        check(r.returncode == 3 and r.stderr.strip() and not r.stdout, f"exit {r.returncode}: {r.stderr}")


if __name__ == "__main__":
    main()
