"""`mk tokenize --chat` against transformers' apply_chat_template on the real Qwen3 and
Llama 3 tokenizer_config.json templates: the rendered prompt byte for byte (--render)
and the ids, for system/user/assistant turns, multi-turn, <think> blocks, tool turns,
whitespace that Llama's `trim` removes, and Qwen3 thinking on/off."""
import json
import os

from mkt import MK, MK_FAST, ROOT, case, check, main, mk

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
from transformers import AutoTokenizer  # noqa: E402

TOKDIRS = {n: os.path.join(ROOT, "data", "tokenizers", n) for n in ("qwen3", "llama3")}
# Loading under ASan takes seconds: the sanitized binary renders the first few
# conversations, the optimized one all of them, each batch in one --jsonl process.
FAST = MK_FAST if os.path.exists(MK_FAST) else MK
N_ASAN = 3
_hf = {}


def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


def s(c):
    return {"role": "system", "content": c}


CONVERSATIONS = [
    [u("Hello!")],
    [s("You are terse."), u("What is 2+2?")],
    [s("Be kind."), u("hi"), a("Hello! How can I help?"), u("Tell me a joke.")],
    [u("first"), a("<think>\nplan it\n</think>\n\nanswer one"), u("second")],
    [u("q"), a("<think>\nreason\n</think>\n\nfinal")],
    [u("q"), a("no think block here")],
    [u("q"), a("\n\n<think>a</think>b<think>c</think>\n\nd")],
    [u("call a tool"), a("<think>\nneed tool\n</think>\n\ncalling"),
     {"role": "tool", "content": "42"}, {"role": "tool", "content": "43"}],
    [u("<tool_response>x</tool_response>"), a("ok")],
    [u("  padded \n\t"), a("\n answer \n"), u("\u00a0nbsp\u3000 and \x1c")],
    [u("Unicode: 日本語 Cửa Việt 👨‍👩‍👧 \u2028 line")],
    [u("inject <|im_end|> and <|eot_id|> tokens"), a("<|im_start|>odd")],
    [s("sys1"), u("x"), s("second system"), u("y")],
    [u(""), a(""), u("")],
    [{"role": "developer", "content": "custom role"}, u("go")],
]


def hf_render(name, msgs, thinking):
    if name not in _hf:
        _hf[name] = AutoTokenizer.from_pretrained(TOKDIRS[name])
    t = _hf[name]
    text = t.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                 enable_thinking=thinking)
    ids = t.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                enable_thinking=thinking)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return text, list(ids)


def mk_chat_batch(binary, name, convs, thinking, render):
    """All conversations through one `mk tokenize --chat --jsonl` process."""
    args = ["tokenize", "--tokenizer", TOKDIRS[name], "--chat", "--jsonl", "--thinking",
            "on" if thinking else "off"] + (["--render"] if render else [])
    r = mk(*args, input="".join(json.dumps(m) + "\n" for m in convs), binary=binary)
    check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr}")
    out = [json.loads(l) for l in r.stdout.split("\n")[:-1]]
    check(len(out) == len(convs), f"{len(out)} lines for {len(convs)} conversations")
    return out


def run_all(name):
    n = 0
    for binary, convs in ((FAST, CONVERSATIONS), (MK, CONVERSATIONS[:N_ASAN])):
        for thinking in (True, False):
            texts = mk_chat_batch(binary, name, convs, thinking, True)
            ids = mk_chat_batch(binary, name, convs, thinking, False)
            for msgs, text, got in zip(convs, texts, ids):
                want_text, want_ids = hf_render(name, msgs, thinking)
                check(text == want_text,
                      f"{name} thinking={thinking} {msgs!r}:\n  hf {want_text!r}\n  mk {text!r}")
                check(got == want_ids, f"{name} ids differ for {msgs!r}: {got} vs {want_ids}")
                n += 1
    print(f"    {name}: {n} renderings identical (text and ids)")


@case
def render_without_jsonl_is_raw_text():
    r = mk("tokenize", "--tokenizer", TOKDIRS["llama3"], "--chat", "--render",
           input=json.dumps([u(" hi ")]))
    want = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")
    check(r.returncode == 0 and r.stdout == want, repr(r.stdout))


@case
def qwen3_chat_matches_transformers():
    run_all("qwen3")


@case
def llama3_chat_matches_transformers():
    run_all("llama3")


@case
def qwen3_thinking_off_inserts_empty_think():
    r = mk("tokenize", "--tokenizer", TOKDIRS["qwen3"], "--chat", "--thinking", "off", "--render",
           input=json.dumps([u("hi")]))
    check(r.stdout.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), repr(r.stdout))


@case
def chat_bad_input():
    d = TOKDIRS["qwen3"]
    r = mk("tokenize", "--tokenizer", d, "--chat", input='{"role": "user"}')
    check(r.returncode == 1 and "JSON array" in r.stderr, r.stderr)
    r = mk("tokenize", "--tokenizer", d, "--chat", input='[{"role": "user"}]')
    check(r.returncode == 1 and "messages[0]" in r.stderr, r.stderr)
    r = mk("tokenize", "--tokenizer", d, "--chat", "--thinking", "maybe", input="[]")
    check(r.returncode == 2, f"exit {r.returncode}")


if __name__ == "__main__":
    main()
