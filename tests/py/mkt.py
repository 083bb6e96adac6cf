"""A minimal harness for the Python tests: `@case` registers a function, `main()` runs
them, printing "PASS name" / "FAIL name" lines that tests/run.sh counts. A case fails by
raising (use `check(cond, msg)` or plain assert)."""
import os
import subprocess
import sys
import traceback

ROOT = os.environ.get("MK_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("MK_BUILD", "build")
MK = os.environ.get("MK_BIN", os.path.join(ROOT, BUILD, "asan", "mk"))
MK_FAST = os.environ.get("MK_BIN_FAST", os.path.join(ROOT, BUILD, "mk"))
_cases = []


def case(fn):
    _cases.append(fn)
    return fn


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def mk(*args, input=None, binary=None, timeout=600):
    """Run the mk CLI; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([binary or MK, *map(str, args)], input=input, capture_output=True,
                          text=True, timeout=timeout)


def tmpdir(name):
    d = os.path.join(ROOT, BUILD, "test-tmp", name)
    os.makedirs(d, exist_ok=True)
    return d


def main():
    failed = 0
    only = sys.argv[1:]
    for fn in _cases:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
            print(f"PASS {fn.__name__}", flush=True)
        except Exception:
            failed += 1
            for line in traceback.format_exc().rstrip().splitlines():
                print("    " + line)
            print(f"FAIL {fn.__name__}", flush=True)
    sys.exit(1 if failed else 0)
