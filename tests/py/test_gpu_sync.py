"""`mk gpu --sync-bench` (the floor of the megakernel's cross-SM sync): the usage names
the flag, bad arguments exit 2; without a device (or a build without CUDA) it exits 3 with
the one line `mk gpu` prints and no table; with one, it prints the four-row table (no
timing is asserted: only that every row has numbers and the p90 is not below the median)."""
import re

from mkt import case, check, main, mk


def no_device():
    return mk("gpu").returncode == 3


@case
def usage_names_the_flag():
    r = mk("gpu", "--help")
    check(r.returncode == 0 and r.stdout.startswith("usage: mk gpu"), r.stdout[:80])
    check("--sync-bench" in r.stdout, r.stdout)


@case
def bad_arguments_exit_2():
    for args in (["--sync-bench", "extra"], ["--sync-bench", "--sync-bench"], ["--sync"],
                 ["extra", "--sync-bench"]):
        r = mk("gpu", *args)
        check(r.returncode == 2, f"{args}: exit {r.returncode}: {r.stderr}")
        check(r.stderr.startswith("mk gpu: "), f"{args}: {r.stderr!r}")
        check(r.stdout == "", f"{args}: stdout {r.stdout!r}")


@case
def no_device_exits_3_with_the_reason():
    if not no_device():
        return
    r = mk("gpu", "--sync-bench")
    check(r.returncode == 3, f"exit {r.returncode}: {r.stderr}")
    lines = r.stdout.strip().splitlines()
    check(len(lines) == 1, repr(r.stdout))
    check("built without CUDA" in lines[0] or "no CUDA device" in lines[0], lines[0])
    check(lines[0] == mk("gpu").stdout.strip(), "not the line `mk gpu` prints")


@case
def device_prints_the_table():
    if no_device():
        return
    r = mk("gpu", "--sync-bench")
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    for name in ("chain", "level", "level+bar", "level+bar+4KB"):
        row = [ln for ln in r.stdout.splitlines() if ln.startswith(f"| {name} |")]
        check(len(row) == 1, f"{name}: {r.stdout}")
        med, p90, launch = (float(x) for x in re.findall(r"\| (\d+) ", row[0] + " ")[-3:])
        check(0 < med <= p90 and launch > 0, row[0])


if __name__ == "__main__":
    main()
