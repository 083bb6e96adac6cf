"""mk bench without a GPU: usage, bad arguments (exit 2), no device (exit 3, one line),
and the measurement plan of --dry-run as JSON lines in the bench/results.jsonl schema:
every (system, test, batch, ctx) the flags ask for, nothing else, names escaped."""
import itertools
import json
import os
import re

from mkt import ROOT, case, check, main, mk

TINY = os.path.join(ROOT, "tests", "data", "goldens", "qwen3_bf16", "ckpt")
KEYS = {"system", "model", "test", "batch", "ctx", "ms", "device", "date", "commit"}
FLOOR_KEYS = {"step_bytes", "floor_ms", "pct_floor"}  # decode (tg) records only
SYSTEMS = ["mk", "mk-per-op", "mk-per-op-graph"]


def dry(*flags, env_commit="c0ffee1"):
    os.environ["MK_COMMIT"] = env_commit
    try:
        r = mk("bench", TINY, "--dry-run", *flags)
    finally:
        del os.environ["MK_COMMIT"]
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    for rec in recs:
        tg = rec["test"].startswith("tg")
        check(set(rec) == (KEYS | FLOOR_KEYS if tg else KEYS), f"keys {sorted(rec)}")
        check(rec["ms"] is None, f"planned ms {rec['ms']}")
        check(not tg or rec["pct_floor"] is None, f"planned pct_floor {rec.get('pct_floor')}")
        check(isinstance(rec["batch"], int) and isinstance(rec["ctx"], int), str(rec))
        check(re.fullmatch(r"\d{4}-\d\d-\d\d", rec["date"]), rec["date"])
        check(rec["commit"] == env_commit, rec["commit"])
        check(isinstance(rec["device"], str) and rec["device"], rec["device"])
    return recs


def have_gpu():
    return mk("gpu").returncode != 3


@case
def help_usage():
    r = mk("bench", "--help")
    check(r.returncode == 0 and r.stdout.startswith("usage: mk bench"), r.stdout[:80])
    for flag in ("--tg", "--pp", "--depth", "--batch", "--reps", "--warmup", "--json", "--jsonl",
                 "--baselines", "--serve-sim", "--dry-run"):
        check(flag in r.stdout, f"usage lacks {flag}")


@case
def bad_arguments_exit_2():
    bad = [[], ["--tg", "1"], ["--tg", "x"], ["--tg", ""], ["--tg", "4,,"], ["--batch", "17"],
           ["--batch", "0"], ["--reps", "0"], ["--warmup", "-1"], ["--baselines", "torch"],
           ["--bogus"], ["--rate", "0"], ["--tg"], ["--dry-run", "--jsonl", "/tmp/x.jsonl"],
           ["--depth", ",".join(["1"] * 17)], ["extra-dir"]]
    for args in bad:
        r = mk("bench", TINY, *args) if args else mk("bench")
        check(r.returncode == 2, f"{args}: exit {r.returncode}, stderr {r.stderr}")
        check(r.stderr.startswith("mk bench: "), f"{args}: stderr {r.stderr[:100]}")


@case
def no_gpu_exit_3_one_line():
    if have_gpu():
        return
    for args in ([], ["--serve-sim"], ["--json", "--baselines", "none"]):
        r = mk("bench", TINY, *args)
        check(r.returncode == 3, f"{args}: exit {r.returncode}: {r.stderr}")
        lines = r.stderr.strip().splitlines()
        check(len(lines) == 1 and lines[0].startswith("mk bench: "), f"{args}: {r.stderr!r}")
        check(r.stdout == "", f"{args}: stdout {r.stdout!r}")


@case
def dry_run_plans_every_measurement():
    recs = dry("--tg", "16,32", "--depth", "0,8", "--batch", "1,2", "--pp", "8,24",
               "--baselines", "all")
    got = sorted((r["system"], r["test"], r["batch"], r["ctx"]) for r in recs)
    want = []
    for b in (1, 2):
        for d, n, s in itertools.product((0, 8), (16, 32), SYSTEMS):
            want.append((s, f"tg{n}", b, d))
        for n in (8, 24):
            want.append(("mk", f"pp{n}", b, n))
    check(got == sorted(want), f"got {got}")
    check(all(r["model"] == "ckpt" for r in recs), recs[0]["model"])


@case
def dry_run_baselines_none_and_no_pp():
    recs = dry("--tg", "4", "--depth", "3", "--pp", "0", "--baselines", "none")
    check([(r["system"], r["test"], r["batch"], r["ctx"]) for r in recs] == [("mk", "tg4", 1, 3)],
          str(recs))
    recs = dry("--tg", "4", "--depth", "3", "--pp", "0", "--baselines", "per-op")
    check(sorted(r["system"] for r in recs) == SYSTEMS, str(recs))


@case
def commit_is_the_binarys_not_the_cwds():
    """Without MK_COMMIT the records name the commit the binary was built from, wherever it
    runs: the same from the repository and from a directory outside any git tree (the old
    code asked git in the working directory, so a binary carried to the device named the
    device tree's commit)."""
    import subprocess
    import tempfile
    from mkt import MK
    env = {k: v for k, v in os.environ.items() if k != "MK_COMMIT"}
    seen = []
    with tempfile.TemporaryDirectory() as outside:
        for cwd in (ROOT, outside):
            r = subprocess.run([MK, "bench", TINY, "--dry-run", "--baselines", "none", "--pp", "0"],
                               capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
            check(r.returncode == 0, r.stderr)
            seen.append(json.loads(r.stdout.splitlines()[0])["commit"])
    check(seen[0] == seen[1], f"commit depends on the working directory: {seen}")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT)
    if head.returncode == 0 and head.stdout.strip():
        # built from this tree (maybe before a later commit): a commit id, never "unknown"
        check(re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", seen[0]), seen[0])


@case
def dry_run_defaults():
    recs = dry()
    got = sorted((r["system"], r["test"], r["batch"], r["ctx"]) for r in recs)
    want = sorted([(s, "tg128", 1, 64) for s in SYSTEMS] + [("mk", "pp512", 1, 512)])
    check(got == want, f"got {got}")


@case
def dry_run_name_escaped():
    name = 'qwen "tiny" \\ 0.6b'
    recs = dry("--name", name, "--baselines", "none", "--pp", "0")
    check(len(recs) == 1 and recs[0]["model"] == name, str(recs))


@case
def dry_run_serve_sim():
    recs = dry("--serve-sim", "--requests", "5", "--rate", "2.5", "--prompt-len", "12", "--gen", "7")
    got = [(r["system"], r["test"], r["batch"], r["ctx"]) for r in recs]
    want = [("mk", f"serve-{m}-{p}", 8, 12) for m in ("ttft", "tpot", "itl") for p in ("p50", "p99")]
    check(got == want, f"got {got}")
    recs = dry("--serve-sim", "--batch", "2,4", "--prompt-len", "3")
    check({(r["batch"], r["ctx"]) for r in recs} == {(4, 3)}, str(recs))


def tiny_step_bytes():
    """Weights one decode step of TINY reads, counted from its config.json: per layer 2
    norms, q, k, v, o, gate, up, down, q/k norms (qwen3); one embedding row, the final norm
    and the tied head [V, H]; bf16."""
    with open(os.path.join(TINY, "config.json")) as f:
        c = json.load(f)
    H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    D, q, kv = c["head_dim"], c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    layer = 2 * H + q * H + 2 * kv * H + H * q + 3 * I * H + 2 * D
    return 2 * (L * layer + 2 * H + V * H), 2 * L * kv * 2


@case
def dry_run_floor_of_decode_at_depth():
    """tg128 at depth 4096 (issue 8's long-context test) plans with a context that holds
    depth + tg; its floor reads the weights and the KV cache at the mean context."""
    recs = dry("--tg", "128", "--depth", "0,4096", "--batch", "1,2", "--pp", "0",
               "--baselines", "none")
    weights, kv_per_pos = tiny_step_bytes()
    check(len(recs) == 4, str(recs))
    for r in recs:
        want = weights + kv_per_pos * r["batch"] * (r["ctx"] + 64)
        check(r["step_bytes"] == want, f"{r}: want step_bytes {want}")
        check(abs(r["floor_ms"] - want / 3.06e9) < 1e-6, f"{r}: want floor {want / 3.06e9} ms")


@case
def dry_run_missing_checkpoint_exit_1():
    r = mk("bench", os.path.join(ROOT, "no", "such", "dir"), "--dry-run")
    check(r.returncode == 1 and r.stderr.startswith("mk bench: "), f"{r.returncode} {r.stderr}")
    check(r.stdout == "", r.stdout)


if __name__ == "__main__":
    main()
