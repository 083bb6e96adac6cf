"""mk bench --profile / --profile-steps / --pgo without a GPU: usage, bad arguments
(exit 2 with a message), the planned mk-pgo measurement of --dry-run (the first tg test
of each batch only), and no files written when there is no device (exit 3)."""
import json
import os

from mkt import ROOT, case, check, main, mk, tmpdir

TINY = os.path.join(ROOT, "tests", "data", "goldens", "qwen3_bf16", "ckpt")


def have_gpu():
    return mk("gpu").returncode != 3


@case
def help_lists_profile_flags():
    r = mk("bench", "--help")
    check(r.returncode == 0, r.stderr)
    for flag in ("--profile PREFIX", "--profile-steps", "--profile-trace-steps", "--pgo"):
        check(flag in r.stdout, f"usage lacks {flag}")


@case
def bad_profile_arguments_exit_2():
    bad = [["--profile"], ["--profile-steps", "0"], ["--profile-steps", "x"],
           ["--profile-trace-steps", "0"], ["--profile-trace-steps", "-2"],
           ["--profile-steps"], ["--dry-run", "--profile", "/tmp/p"],
           ["--serve-sim", "--pgo"], ["--serve-sim", "--profile", "/tmp/p"]]
    for args in bad:
        r = mk("bench", TINY, *args)
        check(r.returncode == 2, f"{args}: exit {r.returncode}, stderr {r.stderr}")
        check(r.stderr.startswith("mk bench: "), f"{args}: stderr {r.stderr[:100]}")


@case
def dry_run_plans_mk_pgo_for_the_first_tg_test():
    r = mk("bench", TINY, "--dry-run", "--pgo", "--tg", "4,6", "--depth", "3,5",
           "--batch", "1,2", "--pp", "0", "--baselines", "none")
    check(r.returncode == 0, r.stderr)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    pgo = sorted((x["test"], x["batch"], x["ctx"]) for x in recs if x["system"] == "mk-pgo")
    check(pgo == [("tg4", 1, 3), ("tg4", 2, 3)], f"mk-pgo records {pgo}")
    check(len(recs) == 2 * 4 + 2, f"{len(recs)} records")
    r = mk("bench", TINY, "--dry-run", "--pp", "0")
    check("mk-pgo" not in r.stdout, r.stdout)


@case
def no_gpu_writes_no_profile():
    if have_gpu():
        return
    prefix = os.path.join(tmpdir("bench_profile"), "prof")
    for suffix in (".json", ".txt"):
        if os.path.exists(prefix + suffix):
            os.remove(prefix + suffix)
    r = mk("bench", TINY, "--profile", prefix, "--pgo", "--tg", "4")
    check(r.returncode == 3, f"exit {r.returncode}: {r.stderr}")
    check(not os.path.exists(prefix + ".json") and not os.path.exists(prefix + ".txt"),
          "profile files written without a GPU")


if __name__ == "__main__":
    main()
