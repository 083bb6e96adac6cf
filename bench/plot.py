#!/usr/bin/env python3
"""Plot ms/token per model for every system in bench/results.jsonl, with the bandwidth
floor of each model, as a PNG.

Each line of the results file is one measurement:
  {"system": "mk" | "torch-eager" | ..., "model": "qwen3-0.6b", "test": "tg128",
   "batch": 1, "ctx": 64, "ms": 0.52, "device": ..., "date": "YYYY-MM-DD", "commit": ...}
Only one test and batch are drawn (default tg128, batch 1); when a (model, system) pair
was measured several times the latest line wins. The floor of a model (bytes one decode
step must read / read bandwidth) comes, in this order, from a record's "step_bytes"
field, from --floor MODEL=MS, or from the floor table of ANCHORS.md (../shared).

  python3 bench/plot.py [--results bench/results.jsonl] [--out bench/results.png]
"""
import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READ_BW = 3.06e12  # bytes/s, H100 read bandwidth measured (ANCHORS.md)


def model_key(name):
    """('qwen3', '0.6') for 'qwen3-0.6b', 'Qwen3-0.6B (tied)'; ('llama', '1') for
    'llama-1b' and 'Llama-3.2-1B', so results and the anchors table name the same model.
    None when no family/size is recognised."""
    n = name.lower()
    fam = re.search(r"qwen3|qwen2|llama|mistral", n)
    sizes = re.findall(r"(\d+(?:\.\d+)?)b\b", n)
    if not fam or not sizes:
        return None
    return fam.group(0), sizes[-1]


def anchor_floors(path):
    """{model key: floor ms} from the '| model | bytes/token | floor @ ... |' table."""
    floors = {}
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return floors
    for m in re.finditer(r"^\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*GB\s*\|\s*([\d.]+)\s*ms\s*\|", text, re.M):
        key = model_key(m.group(1))
        if key:
            floors[key] = float(m.group(3))
    return floors


def read_results(path, test, batch):
    """Latest record per (model, system) for the test and batch; problems go to stderr."""
    latest = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                ms = float(r["ms"])
                model, system = str(r["model"]), str(r["system"])
            except (ValueError, KeyError, TypeError) as e:
                print(f"{path}:{lineno}: skipped, not a result record ({e})", file=sys.stderr)
                continue
            if r.get("test") != test or int(r.get("batch", 1)) != batch:
                continue
            latest[(model, system)] = r | {"ms": ms}
    return latest


def parse_floor_overrides(items):
    out = {}
    for it in items:
        name, _, ms = it.partition("=")
        key = model_key(name)
        try:
            out[key or name] = float(ms)
        except ValueError:
            sys.exit(f"plot.py: --floor expects MODEL=MS, got '{it}'")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.jsonl"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.png"))
    p.add_argument("--anchors", default=os.path.join(ROOT, "..", "shared", "ANCHORS.md"))
    p.add_argument("--test", default="tg128")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--floor", action="append", default=[], metavar="MODEL=MS",
                   help="bandwidth floor of a model in ms (repeatable)")
    a = p.parse_args(argv)

    if not os.path.exists(a.results):
        sys.exit(f"plot.py: {a.results} does not exist: run the benchmarks first "
                 f"(mk bench --json, bench/peers/torch_decode.py --jsonl {a.results})")
    latest = read_results(a.results, a.test, a.batch)
    if not latest:
        sys.exit(f"plot.py: {a.results} has no {a.test} batch-{a.batch} results to plot")

    floors = anchor_floors(a.anchors)
    overrides = parse_floor_overrides(a.floor)
    def order(m):
        k = model_key(m)
        return (k[0], float(k[1]), m) if k else (m, 0.0, m)
    models = sorted({m for m, _ in latest}, key=order)
    systems = sorted({s for _, s in latest}, key=lambda s: (s != "mk", s))
    floor_ms = {}
    for m in models:
        recs = [r for (mm, _), r in latest.items() if mm == m and r.get("step_bytes")]
        key = model_key(m)
        if recs:
            floor_ms[m] = float(recs[-1]["step_bytes"]) / READ_BW * 1e3
        elif m in overrides or key in overrides:
            floor_ms[m] = overrides.get(m, overrides.get(key))
        elif key in floors:
            floor_ms[m] = floors[key]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models) * max(1, len(systems)) / 2), 4.5))
    for j, s in enumerate(systems):
        xs, ys = [], []
        for i, m in enumerate(models):
            r = latest.get((m, s))
            if r:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["ms"])
        ax.bar(xs, ys, width, label=s)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.2f}", (x, y), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
    label = "bandwidth floor"
    for i, m in enumerate(models):
        if m in floor_ms:
            ax.hlines(floor_ms[m], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                      label=label)
            label = None  # one legend entry
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models)
    ax.set_yscale("log")
    ax.set_ylabel("ms / token (log scale; lower is better)")
    devices = sorted({str(r.get("device", "?")) for r in latest.values()})
    ax.set_title(f"decode {a.test}, batch {a.batch} — {', '.join(devices)}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    missing = [m for m in models if m not in floor_ms]
    print(f"wrote {a.out}: {len(models)} models x {len(systems)} systems"
          + (f"; no floor known for {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
