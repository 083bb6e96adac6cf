#!/usr/bin/env python3
"""Load generator for `mk serve` (or any OpenAI-compatible server, e.g. vLLM), after
vLLM's benchmark_serving: streamed /v1/completions requests with random token-id prompts
of --input-len tokens and exactly --output-len generated tokens (ignore_eos), run at each
concurrency level (default 1, 8, 32). Per request it measures
  TTFT  send -> first chunk with text
  ITL   gaps between text chunks
  TPOT  (last text - first text) / (output tokens - 1)
and appends to --out, in bench/results.jsonl's format (see bench/plot.py), one line per
(concurrency, metric): test "serve-ttft-p50", "serve-ttft-p99", "serve-tpot-p50",
"serve-tpot-p99", "serve-itl-p50", "serve-itl-p99"; "batch" is the concurrency, "ms" the
value; extra fields give lengths, counts, throughput and mean. Standard library only, so
it runs on a bare GPU machine. Point it at a running server (--url) or let it start one
(--serve DIR), e.g. on the GPU machine:

  python3 bench/serve_load.py --serve /tmp/mk-models/qwen3-0.6b --mk build/mk \
      --model-label qwen3-0.6b --concurrency 1,8,32 --input-len 128 --output-len 128
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(xs):
    ms = [x * 1e3 for x in xs]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "mean": statistics.fmean(ms) if ms else None,
            "n": len(ms)}


class Target:
    def __init__(self, url, api_key):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def get(self, path, timeout=30):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request("GET", path, headers=self.headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def one_request(t, model, prompt, output_len, timeout):
    """One streamed completion; returns a dict of timings or raises."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": output_len, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True})
    c = http.client.HTTPConnection(t.host, t.port, timeout=timeout)
    try:
        t0 = time.perf_counter()
        c.request("POST", "/v1/completions", body=body, headers=t.headers)
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
        first, last, gaps, usage, finish = None, None, [], None, None
        for raw in r:  # one line at a time; events are "data: {...}" then a blank line
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            if line == b"data: [DONE]":
                break
            ev = json.loads(line[6:])
            if "error" in ev:
                raise RuntimeError(f"stream error: {ev['error'].get('message')}")
            now = time.perf_counter()
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev.get("choices") or []:
                finish = ch.get("finish_reason") or finish
                if ch.get("text"):
                    if first is None:
                        first = now
                    else:
                        gaps.append(now - last)
                    last = now
        end = time.perf_counter()
    finally:
        c.close()
    if first is None or usage is None:
        raise RuntimeError("no text or no usage in the stream")
    n = usage["completion_tokens"]
    return {"ttft": first - t0, "e2e": end - t0, "itl": gaps, "tokens": n, "finish": finish,
            "tpot": (last - first) / (n - 1) if n > 1 else None}


def run_level(t, model, prompts, concurrency, output_len, timeout):
    results, failures = [], []
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=concurrency) as ex:
        futs = [ex.submit(one_request, t, model, p, output_len, timeout) for p in prompts]
        for f in cf.as_completed(futs):
            try:
                results.append(f.result())
            except Exception as e:  # noqa: BLE001 - counted and shown
                failures.append(repr(e))
    dur = time.perf_counter() - t0
    out_tokens = sum(r["tokens"] for r in results)
    return {
        "completed": len(results), "failed": len(failures), "errors": failures[:3], "duration_s": dur,
        "request_per_s": len(results) / dur, "output_tokens": out_tokens, "output_tok_per_s": out_tokens / dur,
        "ttft_ms": summary([r["ttft"] for r in results]),
        "tpot_ms": summary([r["tpot"] for r in results if r["tpot"] is not None]),
        "itl_ms": summary([g for r in results for g in r["itl"]]),
        "e2e_ms": summary([r["e2e"] for r in results]),
        "finish_reasons": sorted({r["finish"] for r in results if r["finish"]}),
    }


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name():
    """The first GPU's name from nvidia-smi, else "cpu"."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def records(args, model, backend, c, n, level):
    """bench/results.jsonl lines of one concurrency level."""
    base = {"system": args.system, "model": model, "batch": c, "ctx": args.input_len + args.output_len,
            "device": args.device, "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": git_commit(),
            "note": args.note or f"mk serve ({backend}), streamed completions, random prompt ids, ignore_eos",
            "concurrency": c, "num_prompts": n, "input_len": args.input_len, "output_len": args.output_len,
            "completed": level["completed"], "failed": level["failed"], "duration_s": level["duration_s"],
            "request_per_s": level["request_per_s"], "output_tok_per_s": level["output_tok_per_s"]}
    out = []
    for metric in ("ttft", "tpot", "itl"):
        st = level[metric + "_ms"]
        for p in ("p50", "p99"):
            if st[p] is not None:
                out.append({**base, "test": f"serve-{metric}-{p}", "ms": round(st[p], 4), "mean_ms": st["mean"],
                            "samples": st["n"]})
    return out


def start_server(args):
    """`mk serve DIR --port 0 ...`; returns (process, url)."""
    cmd = [args.mk, "serve", args.serve, "--port", "0", "--max-batch", str(args.max_batch), "--max-queue", "4096",
           *args.serve_arg]
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"serve_load.{os.getpid()}.log"), "w+")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    t0 = time.time()
    while time.time() - t0 < args.start_timeout:
        log.seek(0)
        for line in log:
            if "listening on http://" in line:
                url = line.split("listening on ")[1].split()[0]
                t = Target(url, args.api_key)
                while time.time() - t0 < args.start_timeout:
                    try:
                        if t.get("/health")[0] == 200:
                            return p, url
                    except OSError:
                        pass
                    if p.poll() is not None:
                        break
                    time.sleep(0.2)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    p.kill()
    sys.exit(f"serve_load: mk serve did not become ready:\n{log.read()[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--serve", metavar="DIR", help="start `mk serve DIR` on a free port and stop it at the end")
    ap.add_argument("--mk", default=os.path.join(ROOT, "build", "mk"))
    ap.add_argument("--serve-arg", action="append", default=[], help="extra argument for mk serve (repeatable)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--start-timeout", type=float, default=600)
    ap.add_argument("--model", help="model id (default: the first of /v1/models)")
    ap.add_argument("--api-key")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--num-prompts", type=int, help="requests per level (default: max(8, 4 x concurrency))")
    ap.add_argument("--input-len", type=int, default=128, help="prompt tokens (random ids)")
    ap.add_argument("--output-len", type=int, default=128, help="generated tokens (ignore_eos)")
    ap.add_argument("--vocab-lo", type=int, default=1000, help="prompt ids are drawn from [lo, hi)")
    ap.add_argument("--vocab-hi", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800, help="per-request socket timeout, s")
    ap.add_argument("--system", default="mk", help='results "system" (e.g. vllm when measuring a peer)')
    ap.add_argument("--model-label", help='results "model", e.g. qwen3-0.6b (default: the served id)')
    ap.add_argument("--device", default=None, help='results "device" (default: nvidia-smi\'s name, or cpu)')
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.jsonl"))
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x]
    proc = None
    if args.serve:
        proc, args.url = start_server(args)
    try:
        t = Target(args.url, args.api_key)
        status, body = t.get("/v1/models")
        if status != 200:
            sys.exit(f"serve_load: /v1/models: HTTP {status}: {body[:200]!r}")
        info = json.loads(body)["data"][0]
        model = args.model or info["id"]
        rng = random.Random(args.seed)
        one_request(t, model, [rng.randrange(args.vocab_lo, args.vocab_hi) for _ in range(args.input_len)],
                    min(args.output_len, 4), args.timeout)  # warm-up, not counted
        label = args.model_label or model
        args.device = args.device or device_name()
        for c in levels:
            n = args.num_prompts or max(8, 4 * c)
            prompts = [[rng.randrange(args.vocab_lo, args.vocab_hi) for _ in range(args.input_len)] for _ in range(n)]
            level = run_level(t, model, prompts, c, args.output_len, args.timeout)
            with open(args.out, "a") as f:
                for r in records(args, label, info.get("backend", "?"), c, n, level):
                    f.write(json.dumps(r) + "\n")
            fmt = lambda st: "-" if st["p50"] is None else f"{st['p50']:.1f}/{st['p99']:.1f}"  # noqa: E731
            print(f"concurrency {c:3d}: {level['completed']}/{n} ok, TTFT p50/p99 {fmt(level['ttft_ms'])} ms, "
                  f"TPOT {fmt(level['tpot_ms'])} ms, ITL {fmt(level['itl_ms'])} ms, "
                  f"{level['output_tok_per_s']:.1f} tok/s", flush=True)
            if level["failed"]:
                print(f"  failures: {level['errors']}", file=sys.stderr)
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
