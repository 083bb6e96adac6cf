"""Added-token flags against HF `tokenizers`: the real Qwen3 tokenizer.json with its
added tokens' lstrip / rstrip / single_word / normalized flags switched on (the shipped
files leave them all off), written to a temp dir, compared on strings that put those
tokens next to whitespace, letters and combining marks."""
import json
import os

from mkt import MK, MK_FAST, ROOT, case, check, main, mk, tmpdir
from tokenizers import Tokenizer

FAST_OR_MK = MK_FAST if os.path.exists(MK_FAST) else MK
SRC = os.path.join(ROOT, "data", "tokenizers", "qwen3", "tokenizer.json")
FLAGS = {
    "<|im_end|>": {"lstrip": True},
    "<|im_start|>": {"rstrip": True},
    "<|endoftext|>": {"lstrip": True, "rstrip": True},
    "<think>": {"single_word": True},
    "</think>": {"normalized": True},
    "<tool_call>": {"single_word": True, "lstrip": True},
}
STRINGS = [
    "a <|im_end|> b", "a\n\n<|im_end|>", "  <|im_end|>", "x<|im_start|>   y", "<|im_start|>\n\nuser",
    " \t<|endoftext|> \n z", "<|endoftext|><|endoftext|>  <|endoftext|>", "a<think>b", "a <think> b",
    "<think>", "é<think>", "_<think>", "1<think>", "a </think>b", "</think>\u0301", "e\u0301</think>",
    "ab <tool_call>cd", "ab <tool_call> cd", "  <tool_call>", "<|im_end|> <|im_end|>  <|im_end|>",
    "\u3000<|im_end|>\u00a0", "<|im_start|>\u2028x", "plain text only",
]


def write_variant():
    with open(SRC, encoding="utf-8") as f:
        tj = json.load(f)
    for t in tj["added_tokens"]:
        t.update(FLAGS.get(t["content"], {}))
    d = tmpdir("tokenizer_flags")
    path = os.path.join(d, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    return path


@case
def added_token_flags_match_hf():
    path = write_variant()
    for special in (True, False):
        hf = Tokenizer.from_file(path)
        hf.encode_special_tokens = not special
        want = [hf.encode(s, add_special_tokens=False).ids for s in STRINGS]
        args = ["tokenize", "--tokenizer", path, "--jsonl"] + (["--special"] if special else [])
        r = mk(*args, input="".join(json.dumps(s) + "\n" for s in STRINGS), binary=FAST_OR_MK)
        check(r.returncode == 0, r.stderr)
        got = [json.loads(l) for l in r.stdout.split("\n")[:-1]]
        bad = [(STRINGS[i], want[i], got[i]) for i in range(len(STRINGS)) if got[i] != want[i]]
        check(not bad, f"special={special}: {len(bad)} differ: {bad[:4]}")


if __name__ == "__main__":
    main()
