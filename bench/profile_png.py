#!/usr/bin/env python3
"""Draw the megakernel's per-task profile as a PNG timeline: one row per SM, each task a
bar colored by its op, the waits before tasks grey and hatched, a dashed line where each
step's last task ended.

Input: the Perfetto / Chrome trace of `mk bench --profile PREFIX` (PREFIX.json: "X"
events, tid = SM, ts/dur in microseconds, cat "task" or "wait", args.step). The GPU
machine has no matplotlib: fetch the JSON and draw here.

    python3 bench/profile_png.py PREFIX.json[.gz] [-o PNG] [--steps 0:4] [--us 0:50]
"""
import argparse
import collections
import gzip
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

OPS = ["EMBED", "NORM_LINEAR", "LINEAR_RESIDUAL", "NORM_GATE_UP", "QK_ROPE_KV", "ATTN_PARTIAL",
       "ATTN_MERGE", "LOGITS", "SAMPLE", "NOP"]


def parse_range(text, kind=int):
    """A:B -> (A, B); an empty side is open (A: 0, B: None)."""
    lo, _, hi = text.partition(":")
    try:
        lo = kind(lo) if lo else 0
        hi = kind(hi) if hi else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B ({kind.__name__}s), got '{text}'")
    if lo < 0 or (hi is not None and hi <= lo):
        raise argparse.ArgumentTypeError(f"expected 0 <= A < B, got '{text}'")
    return lo, hi


def inside(lo, hi, x):
    return x >= lo and (hi is None or x < hi)


def load(path, steps, window):
    """Task and wait slices of the selected steps that start inside the time window (µs
    from the trace's origin): lists of (sm, op, t0, dur, step); and where each step's last
    task ended (all tasks of the trace)."""
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        doc = json.load(f)
    events = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        sys.exit(f"profile_png: {path}: expected an object with a traceEvents array")
    lo, hi = steps
    tasks, waits, ends = [], [], collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X":
            continue
        step = e.get("args", {}).get("step", 0)
        if e.get("cat") != "wait":
            ends[step] = max(ends[step], float(e["ts"]) + float(e["dur"]))
        if not inside(lo, hi, step) or not inside(*window, float(e["ts"])):
            continue
        row = (int(e["tid"]), e["name"].split(" ")[0], float(e["ts"]), float(e["dur"]), step)
        (waits if e.get("cat") == "wait" else tasks).append(row)
    if not tasks:
        sys.exit(f"profile_png: {path}: no task events in the steps and time window asked for")
    return tasks, waits, ends


def draw(tasks, waits, ends, out, title):
    sms = sorted({r[0] for r in tasks} | {r[0] for r in waits})
    row_of = {sm: i for i, sm in enumerate(sms)}
    t0 = 0.0  # the trace's origin: --us windows read off this axis
    ops = [op for op in OPS if any(r[1] == op for r in tasks)]
    ops += sorted({r[1] for r in tasks} - set(ops))
    cmap = plt.get_cmap("tab10")
    color = {op: cmap(i % 10) for i, op in enumerate(ops)}
    fig_h = max(3.0, 0.06 * len(sms) + 1.5)
    fig, ax = plt.subplots(figsize=(16, fig_h), dpi=120)
    bars = collections.defaultdict(list)
    for sm, op, ts, dur, _ in tasks:
        bars[(sm, op)].append((ts - t0, dur))
    for (sm, op), xs in bars.items():
        ax.broken_barh(xs, (row_of[sm] - 0.4, 0.8), facecolors=color[op], linewidth=0)
    wbars = collections.defaultdict(list)
    for sm, _, ts, dur, _ in waits:
        wbars[sm].append((ts - t0, dur))
    for sm, xs in wbars.items():
        ax.broken_barh(xs, (row_of[sm] - 0.4, 0.8), facecolors="0.85", edgecolors="0.55",
                       hatch="////", linewidth=0)
    x0 = min(r[2] for r in tasks + waits)
    x1 = max(r[2] + r[3] for r in tasks + waits)
    for step, x in sorted(ends.items()):
        if x0 <= x <= x1:
            ax.axvline(x, color="k", linestyle="--", linewidth=0.6)
            ax.text(x, -1.0, f"end of step {step}", ha="right", va="bottom", fontsize=7)
    ax.set_ylim(len(sms) - 0.5, -1.5)
    ticks = range(0, len(sms), max(1, len(sms) // 16))
    ax.set_yticks(list(ticks))
    ax.set_yticklabels([f"SM {sms[i]}" for i in ticks], fontsize=7)
    ax.set_xlabel("time (µs) from the profile's first wait")
    ax.set_title(title, fontsize=10)
    handles = [Patch(facecolor=color[op], label=op) for op in ops]
    handles.append(Patch(facecolor="0.85", edgecolor="0.55", hatch="////", label="wait"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", help="PREFIX.json (or .json.gz) written by mk bench --profile")
    ap.add_argument("-o", "--out", help="PNG to write (default: the trace's name .png)")
    ap.add_argument("--steps", type=parse_range, default=(0, 3),
                    help="profiled steps A:B to draw (default 0:3; ':' for all)")
    ap.add_argument("--us", type=lambda t: parse_range(t, float), default=(0, None),
                    help="time window A:B in µs of the trace to draw (default: all)")
    ap.add_argument("--title", help="figure title (default: the trace's file name)")
    a = ap.parse_args(argv)
    base = a.trace[:-3] if a.trace.endswith(".gz") else a.trace
    out = a.out or (base[:-5] if base.endswith(".json") else base) + ".png"
    tasks, waits, ends = load(a.trace, a.steps, a.us)
    draw(tasks, waits, ends, out, a.title or a.trace)
    print(f"{out}: {len(tasks)} tasks, {len(waits)} waits")


if __name__ == "__main__":
    main()
