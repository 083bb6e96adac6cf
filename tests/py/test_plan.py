"""mk plan: summary and stats from config.json alone, JSON / dot dumps that agree with the
summary, --save writes a loadable-looking plan, real shapes, bad arguments and files."""
import json
import os
import re

from mkt import case, check, main, mk, tmpdir, ROOT

TINY = os.path.join(ROOT, "tests", "data", "goldens", "qwen3_bf16", "ckpt")


def config_dir(name, **over):
    """A directory holding only config.json: the tiny Qwen3 golden's, with fields replaced."""
    cfg = json.load(open(os.path.join(TINY, "config.json")))
    cfg.update(over)
    d = tmpdir("plan-" + name)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


@case
def summary_and_stats():
    r = mk("plan", TINY, "--sms", 8, "--batch", 2, "--stats")
    check(r.returncode == 0, r.stderr)
    m = re.search(r"plan: +(\d+) tasks, (\d+) events", r.stdout)
    check(m, r.stdout)
    ops = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 6 and f[1].isdigit() and f[0].isupper():
            ops[f[0]] = int(f[1])
    check(sum(ops.values()) == int(m.group(1)), f"{ops} vs {m.group(1)}")
    check(ops.get("SAMPLE") == 2 and ops.get("ATTN_MERGE") == 4 and "QK_ROPE_KV" not in ops, ops)
    check("per-SM busy" in r.stdout and "floor" in r.stdout, r.stdout)


@case
def dumps_agree_with_the_summary():
    s = mk("plan", TINY, "--sms", 16)
    n = int(re.search(r"plan: +(\d+) tasks", s.stdout).group(1))
    r = mk("plan", TINY, "--sms", 16, "--dump", "json")
    check(r.returncode == 0, r.stderr)
    j = json.loads(r.stdout)
    check(len(j["tasks"]) == n and len(j["programs"]) == 16, (len(j["tasks"]), n))
    scheduled = sorted(t for p in j["programs"] for t in p)
    check(scheduled == list(range(n)), "every task exactly once in the programs")
    for t in j["tasks"]:
        for ev, off in t["waits"]:
            check(ev < len(j["events"]) and off in (0, -1), t)
        check(t["smem"] <= j["target"]["smem_per_block"], t)
    d = mk("plan", TINY, "--sms", 16, "--dump", "dot")
    check(d.returncode == 0 and d.stdout.startswith("digraph plan {"), d.stderr)
    check(d.stdout.count("->") > 0)


@case
def save_writes_a_plan_file():
    out = os.path.join(tmpdir("plan-save"), "plan.bin")
    r = mk("plan", TINY, "--save", out)
    check(r.returncode == 0, r.stderr)
    data = open(out, "rb").read()
    check(data[:8] == b"MKPLAN\r\n" and len(data) > 1000, data[:8])


@case
def real_shape_config_alone():
    d = config_dir("qwen3-8b", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                   num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                   vocab_size=151936, tie_word_embeddings=False, max_position_embeddings=40960)
    r = mk("plan", d, "--batch", 1)
    check(r.returncode == 0, r.stderr)
    pred = float(re.search(r"predicted ([\d.]+) us", r.stdout).group(1))
    floor = float(re.search(r"floor ([\d.]+) us", r.stdout).group(1))
    check(4500 < floor < 5500, f"Qwen3-8B floor {floor} us")  # 15.1 GB / 3.06 TB/s
    check(pred >= floor * 0.9, f"predicted {pred} us below the floor {floor} us")


@case
def bad_arguments_and_files():
    for args in (["--batch", 17], ["--sms", 0], ["--dump", "xml"], ["--bogus"], ["--sms"]):
        r = mk("plan", TINY, *args)
        check(r.returncode == 2, f"{args}: rc {r.returncode}")
    check(mk("plan").returncode == 2)
    r = mk("plan", "/nonexistent-dir")
    check(r.returncode == 1 and "config.json" in r.stderr, r.stderr)
    d = config_dir("bad-head-dim", head_dim=12)
    r = mk("plan", d)
    check(r.returncode == 1 and "multiples of 8" in r.stderr, r.stderr)
    h = mk("plan", "--help")
    check(h.returncode == 0 and h.stdout.startswith("usage: mk plan"), h.stdout)


if __name__ == "__main__":
    main()
