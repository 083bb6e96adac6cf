"""`mk tokenize` / `mk detokenize` against the Hugging Face `tokenizers` package on the
real Qwen3 and Llama 3 tokenizer.json files: identical ids on 20,000+ strings (random
Unicode from many scripts, emoji sequences, whitespace runs, digits, contractions,
100k-character strings, known edge cases, special tokens with and without --special),
and decode(encode(x)) == x.

The bulk runs use the optimized binary (mkt.MK_FAST) through one `--jsonl` process;
a smaller slice runs on the ASan/UBSan binary.

NFC tables: HF's normalizer (crate unicode-normalization-alignments) orders some
combining marks differently from the Unicode standard (Python's unicodedata) for
characters newer than its tables. For those few strings the check is against HF with
the normalizer switched off, fed the standard NFC form: everything but the table is
still compared, and the count of such strings must stay tiny."""
import json
import os
import random
import subprocess
import unicodedata

from mkt import MK, MK_FAST, ROOT, case, check, main, mk
from tok_corpus import EDGE_CASES, corpus, long_strings
from tokenizers import Tokenizer

TOKDIRS = {n: os.path.join(ROOT, "data", "tokenizers", n) for n in ("qwen3", "llama3")}
N_BULK = 20000
N_ASAN = 1500
FAST = MK_FAST if os.path.exists(MK_FAST) else MK
_hf = {}


def hf(name, special):
    """HF tokenizer; `special` = special tokens in text become ids (our --special)."""
    key = (name, special)
    if key not in _hf:
        t = Tokenizer.from_file(os.path.join(TOKDIRS[name], "tokenizer.json"))
        t.encode_special_tokens = not special
        _hf[key] = t
    return _hf[key]


def hf_ids(name, special, strs):
    t = hf(name, special)
    out = [e.ids for e in t.encode_batch(strs, add_special_tokens=False)]
    if t.normalizer is None:
        return out, 0
    # Strings where HF's NFC disagrees with the standard: compare without its normalizer.
    plain = Tokenizer.from_str(t.to_str())
    plain.normalizer = None
    plain.encode_special_tokens = t.encode_special_tokens
    diverged = 0
    for i, s in enumerate(strs):
        std = unicodedata.normalize("NFC", s)
        if t.normalizer.normalize_str(s) != std:
            diverged += 1
            out[i] = plain.encode(std, add_special_tokens=False).ids
    return out, diverged


def mk_jsonl(binary, name, strs, special):
    inp = "".join(json.dumps(s) + "\n" for s in strs)
    args = ["tokenize", "--tokenizer", TOKDIRS[name], "--jsonl"] + (["--special"] if special else [])
    r = mk(*args, input=inp, binary=binary)
    check(r.returncode == 0, f"mk tokenize --jsonl exited {r.returncode}: {r.stderr[:500]}")
    lines = r.stdout.split("\n")[:-1]
    check(len(lines) == len(strs), f"{len(lines)} output lines for {len(strs)} inputs")
    return [json.loads(l) for l in lines]


def compare(binary, name, strs, special):
    ref, diverged = hf_ids(name, special, strs)
    got = mk_jsonl(binary, name, strs, special)
    bad = [i for i in range(len(strs)) if got[i] != ref[i]]
    msg = "".join(f"\n  {strs[i][:60]!r}: hf {ref[i][:12]} mk {got[i][:12]}" for i in bad[:5])
    check(not bad, f"{name} special={special}: {len(bad)} of {len(strs)} differ:{msg}")
    check(diverged <= len(strs) // 500, f"{diverged} strings where HF's NFC is non-standard")
    print(f"    {name} special={special}: {len(strs)} strings identical "
          f"({diverged} checked against standard NFC)")
    return got


def roundtrip(binary, name, strs, ids):
    inp = "".join(json.dumps(x) + "\n" for x in ids)
    r = mk("detokenize", "--tokenizer", TOKDIRS[name], "--jsonl", input=inp, binary=binary)
    check(r.returncode == 0, f"mk detokenize --jsonl exited {r.returncode}: {r.stderr[:500]}")
    back = [json.loads(l) for l in r.stdout.split("\n")[:-1]]  # not splitlines: U+2028
    check(len(back) == len(strs), f"{len(back)} decoded lines for {len(strs)}")
    want = [unicodedata.normalize("NFC", s) if hf(name, True).normalizer else s for s in strs]
    bad = [i for i in range(len(strs)) if back[i] != want[i]]
    check(not bad, f"{name}: decode(encode(x)) != x for {len(bad)} strings, e.g. "
          + "; ".join(repr(strs[i][:40]) for i in bad[:3]))


def bulk(name):
    strs = corpus(N_BULK) + long_strings()
    for special in (False, True):
        got = compare(FAST, name, strs, special)
    roundtrip(FAST, name, strs, got)


@case
def qwen3_bulk_20k_identical_and_roundtrip():
    bulk("qwen3")


@case
def llama3_bulk_20k_identical_and_roundtrip():
    bulk("llama3")


@case
def asan_slice_both_tokenizers():
    strs = corpus(N_ASAN, seed=7) + EDGE_CASES + long_strings()[:2]
    for name in TOKDIRS:
        for special in (False, True):
            got = compare(MK, name, strs, special)
        roundtrip(MK, name, strs, got)


@case
def edge_cases_exact_ids():
    # Fixed expectations (from HF) for the strings that break other implementations.
    for name in TOKDIRS:
        for s in ["\x1f-a", "¼-a", "Ⅵ-a", "\uFEFF//", "Cửa Việt", "a\xa0\xa0\x00b", "3333333"]:
            want = hf(name, False).encode(s, add_special_tokens=False).ids
            r = mk("tokenize", "--tokenizer", TOKDIRS[name], "--jsonl", input=json.dumps(s) + "\n")
            check(r.returncode == 0, r.stderr)
            check(json.loads(r.stdout) == want, f"{name} {s!r}: {r.stdout.strip()} != {want}")


@case
def special_tokens_only_with_flag():
    d = TOKDIRS["qwen3"]
    text = "a<|im_end|>b<think>c"
    plain = json.loads(mk("tokenize", "--tokenizer", d, "--text", text).stdout)
    spec = json.loads(mk("tokenize", "--tokenizer", d, "--text", text, "--special").stdout)
    im_end, think = 151645, 151667
    check(im_end not in plain and think in plain, f"without --special: {plain}")
    check(im_end in spec and think in spec, f"with --special: {spec}")
    check(plain == hf("qwen3", False).encode(text, add_special_tokens=False).ids, "plain vs HF")
    check(spec == hf("qwen3", True).encode(text, add_special_tokens=False).ids, "special vs HF")


@case
def decode_matches_hf_on_random_ids():
    # Random id sequences split UTF-8 characters: both sides must repair them alike.
    r = random.Random(5)
    for name in TOKDIRS:
        t = hf(name, True)
        n = t.get_vocab_size()
        seqs = [[r.randrange(n) for _ in range(r.randint(1, 12))] for _ in range(400)]
        seqs = [[i for i in s if t.id_to_token(i) is not None] or [0] for s in seqs]
        inp = "".join(json.dumps(s) + "\n" for s in seqs)
        res = mk("detokenize", "--tokenizer", TOKDIRS[name], "--jsonl", input=inp)
        check(res.returncode == 0, res.stderr)
        got = [json.loads(l) for l in res.stdout.split("\n")[:-1]]
        want = [t.decode(s, skip_special_tokens=False) for s in seqs]
        bad = [i for i in range(len(seqs)) if got[i] != want[i]]
        check(not bad, f"{name}: {len(bad)} decodes differ, e.g. {seqs[bad[0]] if bad else ''}")


@case
def invalid_utf8_rejected_with_offset():
    d = TOKDIRS["qwen3"]
    r = subprocess.run([MK, "tokenize", "--tokenizer", d], input=b"abc\xffdef", capture_output=True)
    check(r.returncode == 1, f"exit {r.returncode}")
    check(b"invalid UTF-8 at byte 3" in r.stderr, r.stderr)
    r = subprocess.run([MK, "tokenize", "--tokenizer", d], input=b"ok \xe2\x82", capture_output=True)
    check(r.returncode == 1 and b"at byte 3" in r.stderr, r.stderr)


@case
def detokenize_formats_and_errors():
    d = TOKDIRS["llama3"]
    a = mk("detokenize", "--tokenizer", d, input="[9906, 1917]")
    b = mk("detokenize", "--tokenizer", d, "--ids", "9906,1917")
    check(a.stdout == "Hello world" == b.stdout, f"{a.stdout!r} {b.stdout!r}")
    r = mk("detokenize", "--tokenizer", d, "--ids", "9906,999999")
    check(r.returncode == 1 and "999999" in r.stderr, r.stderr)
    r = mk("detokenize", "--tokenizer", d, "--ids", "[1,,2]")
    check(r.returncode == 1, f"exit {r.returncode}")
    r = mk("detokenize", "--tokenizer", d, "--skip-special", "--ids", "128000,9906,128009")
    check(r.stdout == "Hello", repr(r.stdout))


if __name__ == "__main__":
    main()
