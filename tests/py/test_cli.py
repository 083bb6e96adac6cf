"""The mk CLI contract: every subcommand prints usage on --help (exit 0), bad arguments
exit 2, an unknown command exits 2, `mk gpu` exits 0 or 3 with one line."""
from mkt import case, check, main, mk

COMMANDS = ["info", "tokenize", "detokenize", "generate", "plan", "bench", "serve", "synth", "gpu"]


@case
def help_for_every_command():
    for c in COMMANDS:
        r = mk(c, "--help")
        check(r.returncode == 0, f"mk {c} --help exited {r.returncode}: {r.stderr}")
        check("usage: mk " + c in r.stdout, f"mk {c} --help printed no usage: {r.stdout!r}")


@case
def top_level_usage():
    r = mk()
    check(r.returncode == 2 and "usage: mk" in r.stderr, r.stderr)
    r = mk("frobnicate")
    check(r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr, r.stderr)


@case
def bad_arguments_exit_2():
    for c in COMMANDS:
        r = mk(c, "--no-such-flag-xyz")
        check(r.returncode == 2, f"mk {c} --no-such-flag-xyz exited {r.returncode}: {r.stderr}")
        check(r.stderr.strip() != "", f"mk {c}: no message on a bad flag")


@case
def gpu_probe_is_one_line():
    r = mk("gpu")
    check(r.returncode in (0, 3), f"exit {r.returncode}")
    check(len(r.stdout.strip().splitlines()) == 1, repr(r.stdout))


if __name__ == "__main__":
    main()
