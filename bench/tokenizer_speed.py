#!/usr/bin/env python3
"""Encode speed of `mk tokenize` vs Hugging Face `tokenizers`, single thread, same run.

    python3 bench/tokenizer_speed.py [--mb 8] [--build build] [--repeat 3]

For each tokenizer (Qwen3, Llama 3) and each text kind it builds one text of --mb MB,
checks that both produce identical ids, and reports MB/s of CPU time (the shared 2-core
machine is busy, so wall time would measure the neighbours): ours is the CPU time of
the `mk tokenize` process minus that of the same process on empty input (the load),
best of --repeat; HF's is the CPU time of `Tokenizer.encode` on the same text with
RAYON_NUM_THREADS=1, best of --repeat. Load CPU times are reported too.

"identical*" means identical once HF's non-standard NFC table is taken out of the
comparison (see tests/py/test_tokenizer_oracle.py). Not a test: numbers vary."""
import argparse
import json
import os
import random
import subprocess
import sys
import resource
import time
import unicodedata

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
from tok_corpus import GENERATORS, WORDS, g_words  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def english(r, n):
    out, size = [], 0
    while size < n:
        s = g_words(r) + ("\n" if r.random() < 0.1 else " ")
        out.append(s)
        size += len(s.encode())
    return "".join(out)


def code(r, n):
    lines, size = [], 0
    while size < n:
        ind = "    " * r.randint(0, 3)
        w = [r.choice(WORDS) for _ in range(r.randint(1, 6))]
        s = ind + r.choice(["def {}({}):", "{} = {}({})", "return {} + {}", "if {} == {}:",
                            "# {} {} {}", "for {} in range({}):"]).format(*(w * 3)[:3]) + "\n"
        lines.append(s)
        size += len(s.encode())
    return "".join(lines)


def mixed(r, n):
    out, size = [], 0
    while size < n:
        s = GENERATORS[r.randrange(len(GENERATORS))](r) + " "
        if "<|" in s or "<think>" in s or "</think>" in s:
            continue
        out.append(s)
        size += len(s.encode())
    return "".join(out)


def split_docs(text, size=2000):
    """Cut the text into documents of about `size` characters, at spaces."""
    docs, at = [], 0
    while at < len(text):
        end = text.find(" ", at + size)
        end = len(text) if end < 0 else end
        docs.append(text[at:end])
        at = end
    return docs


def time_mk(binary, tokdir, text, repeat, docs=None):
    def cpu():
        u = resource.getrusage(resource.RUSAGE_CHILDREN)
        return u.ru_utime + u.ru_stime

    args = [binary, "tokenize", "--tokenizer", tokdir] + (["--jsonl"] if docs else [])

    def run(inp):
        t = cpu()
        r = subprocess.run(args, input=inp, capture_output=True)
        dt = cpu() - t
        if r.returncode:
            sys.exit(f"mk tokenize failed: {r.stderr.decode()[:300]}")
        return dt, r.stdout
    load = min(run(b"")[0] for _ in range(repeat))
    best, out = None, None
    inp = ("".join(json.dumps(d) + "\n" for d in docs) if docs else text).encode()
    for _ in range(repeat):
        dt, out = run(inp)
        best = dt if best is None else min(best, dt)
    ids = [i for line in out.decode().split("\n")[:-1] for i in json.loads(line)]
    return max(best - load, 1e-9), load, ids


def time_hf(tokdir, text, repeat, docs=None):
    t = time.process_time()
    tk = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    load = time.process_time() - t
    tk.encode_special_tokens = True
    best, ids = None, None
    for _ in range(repeat):
        t = time.process_time()
        if docs:
            ids = [i for d in docs for i in tk.encode(d, add_special_tokens=False).ids]
        else:
            ids = tk.encode(text, add_special_tokens=False).ids
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
    return best, load, ids


def same_up_to_nfc(tokdir, text, ids):
    """Our ids vs HF without its normalizer on the standard NFC of the text."""
    tk = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    if tk.normalizer is None:
        return False
    tk.normalizer = None
    tk.encode_special_tokens = True
    docs = split_docs(text)
    return [i for d in docs for i in tk.encode(unicodedata.normalize("NFC", d),
                                               add_special_tokens=False).ids] == ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=8)
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    binary = os.path.join(ROOT, a.build, "mk")
    r = random.Random(42)
    n = int(a.mb * 1e6)
    texts = {"english": english(r, n), "code": code(r, n), "mixed-unicode": mixed(r, n)}
    print(f"{'tokenizer':9} {'text':14} {'input':10} {'MB':>5} {'mk MB/s':>8} {'HF MB/s':>8} "
          f"{'speedup':>7}  ids")
    loads = {}
    for name in ("qwen3", "llama3"):
        tokdir = os.path.join(ROOT, "data", "tokenizers", name)
        for kind, text in texts.items():
            mb = len(text.encode()) / 1e6
            # 2 KB documents (mk: one --jsonl process, HF: encode per document), and the
            # whole text as one string (HF is much slower on one huge string).
            for form, docs in (("2KB docs", split_docs(text)), ("one string", None)):
                t_mk, l_mk, ids_mk = time_mk(binary, tokdir, text, a.repeat, docs)
                t_hf, l_hf, ids_hf = time_hf(tokdir, text, a.repeat, docs)
                loads[name] = (l_mk, l_hf)
                same = "identical" if ids_mk == ids_hf else \
                    "identical*" if docs and same_up_to_nfc(tokdir, text, ids_mk) else "DIFFER"
                print(f"{name:9} {kind:14} {form:10} {mb:5.1f} {mb / t_mk:8.1f} {mb / t_hf:8.1f} "
                      f"{t_hf / t_mk:6.2f}x  {same} ({len(ids_mk)} ids)", flush=True)
    for name, (l_mk, l_hf) in loads.items():
        print(f"load {name} (CPU): mk process (load + exit) {l_mk * 1000:.0f} ms, "
              f"HF Tokenizer.from_file {l_hf * 1000:.0f} ms")


if __name__ == "__main__":
    main()
