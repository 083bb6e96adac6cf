"""`mk serve` (the ASan build) on 127.0.0.1 over a tiny random-weight Qwen3 with the real
tokenizer, driven by the official `openai` client and raw HTTP: completions and chat,
streaming and not, usage, logprobs, stop strings, seeds, /tokenize, /detokenize, the
400 / 401 / 404 / 405 / 413 / 429 answers, cancellation on hang-up, deadlines, 64
concurrent clients, a bounded fuzz of bodies and headers, and a clean exit with nothing
from the sanitizers. Oracles: `mk generate` (the fast build, same engine) for text and
logprobs, the `tokenizers` package for token ids, each request run alone for the
concurrent run."""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import openai
from tokenizers import Tokenizer

from mkt import MK, MK_FAST, ROOT, case, check, main, mk, tmpdir

TMP = tmpdir("server")
CKPT = os.path.join(TMP, "qwen3-tiny")
NAME = "qwen3-tiny"
KEY = "sk-test-key"
MARK = "ZQXJV"  # planted in bad requests: no error message may contain it
START_S = 120   # liveness bounds, generous: the ASan build on a busy 2-core machine
LIVE_S = 120
FUZZ_MAX_BODY = 65536
_servers = {}


def setup_ckpt():
    if not os.path.exists(os.path.join(CKPT, "model.safetensors")):
        r = mk("synth", "--arch", "qwen3", "--preset", "tiny", "--tokenizer",
               os.path.join(ROOT, "data", "tokenizers", "qwen3"), "--out", CKPT, binary=MK_FAST)
        check(r.returncode == 0, r.stderr)


class Server:
    def __init__(self, name, *flags):
        setup_ckpt()
        self.log = os.path.join(TMP, f"{name}.stderr")
        self.err = open(self.log, "w+")
        # the CPU reference everywhere: the GPU backend is greedy-only
        self.proc = subprocess.Popen([MK, "serve", CKPT, "--port", "0", "--backend", "cpu", *map(str, flags)],
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        self.port = self._port()
        self.statuses = self._wait_ready()

    def _port(self):
        t0 = time.time()
        while time.time() - t0 < START_S:
            with open(self.log) as f:
                for line in f:
                    if "listening on http://127.0.0.1:" in line:
                        return int(line.split("127.0.0.1:")[1].split()[0])
            check(self.proc.poll() is None, f"mk serve exited: {open(self.log).read()}")
            time.sleep(0.05)
        raise AssertionError("mk serve printed no port")

    def _wait_ready(self):
        seen, t0 = [], time.time()
        while time.time() - t0 < START_S:
            status, _, _ = self.request("GET", "/health")
            seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"/health never 200: {seen[-5:]}")

    def request(self, method, path, body=None, headers=None, timeout=LIVE_S):
        """Raw HTTP; returns (status, headers dict, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def client(self, key="none", timeout=LIVE_S):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0,
                             timeout=timeout)

    def metrics(self):
        status, _, body = self.request("GET", "/metrics")
        check(status == 200, f"/metrics {status}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        """SIGTERM; returns (exit code, stderr text)."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=LIVE_S)
        self.err.seek(0)
        return rc, self.err.read()


def server(kind="main"):
    if kind not in _servers:
        flags = {"main": [],
                 "small": ["--max-batch", 1, "--max-queue", 1, "--api-key", KEY],
                 "fuzz": ["--timeout", 1, "--max-ctx", 256, "--max-body", FUZZ_MAX_BODY]}[kind]
        _servers[kind] = Server(kind, *flags)
    return _servers[kind]


def generate(prompt, n, *flags):
    """The same request through `mk generate` (fast build): the oracle."""
    r = mk("generate", CKPT, "--prompt", prompt, "-n", n, "--output", "json", *flags, binary=MK_FAST)
    check(r.returncode == 0, r.stderr)
    return json.loads(r.stdout)


def wait_for(cond, what, limit=LIVE_S):
    t0 = time.time()
    while time.time() - t0 < limit:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- basics -----------------------------------------------------------------------------

@case
def health_models_metrics():
    s = server()
    check(all(st in (503, 200) for st in s.statuses), f"/health answers while loading: {s.statuses}")
    models = s.client().models.list().data
    check([m.id for m in models] == [NAME], f"models {models}")
    m = s.metrics()
    check("mk_queue_depth" in m and "mk_ready" in m and m["mk_ready"] == 1, f"metrics keys {list(m)[:20]}")
    check(m.get('mk_requests_total{endpoint="/health",status="200"}', 0) >= 1, "health not counted")


@case
def completion_matches_generate():
    s = server()
    want = generate("The capital of France is", 6)
    before = s.metrics()
    r = s.client().completions.create(model=NAME, prompt="The capital of France is", max_tokens=6, temperature=0)
    after = s.metrics()
    c = r.choices[0]
    # /metrics counted it: tokens, one TTFT observation, cumulative buckets ending at the count
    for name, n in (("mk_generation_tokens_total", r.usage.completion_tokens),
                    ("mk_prompt_tokens_total", r.usage.prompt_tokens), ("mk_time_to_first_token_seconds_count", 1),
                    ('mk_requests_total{endpoint="/v1/completions",status="200"}', 1)):
        check(after.get(name, 0) - before.get(name, 0) == n, f"{name}: {before.get(name)} -> {after.get(name)}")
    hist = [v for k, v in after.items() if k.startswith("mk_time_to_first_token_seconds_bucket")]
    check(hist == sorted(hist) and hist[-1] == after["mk_time_to_first_token_seconds_count"], f"buckets {hist}")
    check(c.text == want["text"], f"{c.text!r} vs {want['text']!r}")
    check(c.finish_reason == want["finish_reason"], f"{c.finish_reason} vs {want['finish_reason']}")
    check(r.usage.prompt_tokens == len(want["prompt_ids"]) and r.usage.completion_tokens == len(want["ids"]),
          f"usage {r.usage}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total_tokens")
    check(r.object == "text_completion" and r.model == NAME and r.id, f"envelope {r}")
    # token-id prompts give the same answer
    r2 = s.client().completions.create(model=NAME, prompt=want["prompt_ids"], max_tokens=6, temperature=0)
    check(r2.choices[0].text == want["text"], "token-id prompt differs")


@case
def chat_matches_generate():
    s = server()
    want = generate("Say hi.", 5, "--chat")
    r = s.client().chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Say hi."}],
                                           max_tokens=5, temperature=0)
    c = r.choices[0]
    check(c.message.role == "assistant" and c.message.content == want["text"],
          f"{c.message.content!r} vs {want['text']!r}")
    check(r.usage.prompt_tokens == len(want["prompt_ids"]), f"usage {r.usage}")
    # text parts are joined into one content string
    r2 = s.client().chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": [{"type": "text", "text": "Say "},
                                                            {"type": "text", "text": "hi."}]}],
        max_tokens=5, temperature=0)
    check(r2.choices[0].message.content == want["text"], "content parts differ")


@case
def streaming_equals_whole():
    s = server()
    cl = s.client()
    whole = cl.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0)
    chunks = list(cl.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0,
                                        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    check(text == whole.choices[0].text, f"{text!r} vs {whole.choices[0].text!r}")
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finals == [whole.choices[0].finish_reason], f"finish reasons {finals}")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens,
          f"usage chunk {chunks[-1]}")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    whole = cl.chat.completions.create(model=NAME, messages=msgs, max_tokens=6, temperature=0)
    chunks = list(cl.chat.completions.create(model=NAME, messages=msgs, max_tokens=6, temperature=0, stream=True))
    check(chunks[0].choices[0].delta.role == "assistant", "first chat chunk carries no role")
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    check(text == whole.choices[0].message.content, f"{text!r} vs {whole.choices[0].message.content!r}")
    check(all(c.usage is None for c in chunks), "usage without include_usage")


@case
def event_stream_wire_format():
    s = server()
    status, hdr, body = s.request("POST", "/v1/completions",
                                  {"prompt": "\u4f60\u597d", "max_tokens": 12, "temperature": 1, "seed": 3,
                                   "stream": True})
    check(status == 200 and hdr.get("content-type") == "text/event-stream; charset=utf-8", f"{status} {hdr}")
    events = body.split(b"\n\n")
    check(events[-1] == b"" and events[-2] == b"data: [DONE]", f"tail {events[-3:]}")
    for e in events[:-2]:
        e = e.decode("utf-8")  # strict: every event holds whole characters
        check(e.startswith("data: ") and "\n" not in e, f"event {e!r}")
        json.loads(e[6:])


@case
def logprobs_match_generate():
    s = server()
    want = generate("Numbers: one two", 4)
    r = s.client().completions.create(model=NAME, prompt="Numbers: one two", max_tokens=4, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    n = len(want["ids"])
    check(len(lp.tokens) == n and len(lp.token_logprobs) == n and len(lp.top_logprobs) == n, f"{lp}")
    for k in range(n):
        check(abs(lp.token_logprobs[k] - want["steps"][k]["logprob"]) < 1e-4, f"step {k}")
        check(len(lp.top_logprobs[k]) <= 3 and max(lp.top_logprobs[k].values()) >= lp.token_logprobs[k] - 1e-6,
              f"top {k}: {lp.top_logprobs[k]}")
    check("".join(lp.tokens) == r.choices[0].text or r.choices[0].finish_reason == "stop", "tokens join")
    c = s.client().chat.completions.create(model=NAME, messages=[{"role": "user", "content": "x"}], max_tokens=3,
                                           temperature=0, logprobs=True, top_logprobs=2)
    content = c.choices[0].logprobs.content
    check(len(content) >= 1, "no chat logprobs")
    for t in content:
        check(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob, f"{t}")
        check(bytes(t.bytes).decode("utf-8", "replace") == t.token, f"bytes {t}")
    none = s.client().chat.completions.create(model=NAME, messages=[{"role": "user", "content": "x"}],
                                              max_tokens=2, temperature=0)
    check(none.choices[0].logprobs is None, "logprobs without asking")


@case
def stop_strings():
    s = server()
    cl = s.client()
    kw = {"model": NAME, "prompt": "A B C", "max_tokens": 10, "temperature": 1, "seed": 5, "extra_body": {"ignore_eos": True}}
    base = cl.completions.create(**kw)
    text = base.choices[0].text
    check(len(text) >= 6, f"too short to cut: {text!r}")
    for k in range(2, len(text) - 2):  # a stop string that first occurs in the middle
        stop = text[k:k + 2]
        if text.find(stop) == k:
            break
    else:
        raise AssertionError(f"no usable stop string in {text!r}")
    for stream in (False, True):
        r = cl.completions.create(stop=["\u2603", stop], stream=stream, **kw)
        if stream:
            parts = list(r)
            got = "".join(c.choices[0].text for c in parts)
            fr = parts[-1].choices[0].finish_reason
        else:
            got, fr = r.choices[0].text, r.choices[0].finish_reason
        check(got == text[:k] and fr == "stop", f"stream={stream}: {got!r} / {fr} vs {text[:k]!r}")
    r = cl.completions.create(stop=text[0], **kw)
    check(r.choices[0].text == "" and r.choices[0].finish_reason == "stop", "stop at the first character")


@case
def seeds_are_deterministic():
    s = server()
    cl = s.client()
    want = generate("Seeded", 5, "--temperature", "1", "--seed", "1234")
    a = cl.completions.create(model=NAME, prompt="Seeded", max_tokens=5, temperature=1, seed=1234)
    b = cl.completions.create(model=NAME, prompt="Seeded", max_tokens=5, temperature=1, seed=1234, stream=True)
    check(a.choices[0].text == want["text"], f"{a.choices[0].text!r} vs {want['text']!r}")
    check("".join(c.choices[0].text for c in b) == want["text"], "streamed seeded run differs")
    other = [cl.completions.create(model=NAME, prompt="Seeded", max_tokens=5, temperature=1, seed=k).choices[0].text
             for k in (1, 2, 3)]
    check(len(set(other + [want["text"]])) > 1, f"seeds change nothing: {other}")


@case
def tokenize_detokenize():
    s = server()
    hf = Tokenizer.from_file(os.path.join(CKPT, "tokenizer.json"))
    text = "Hello, wörld! 你好 🙂"
    status, _, body = s.request("POST", "/tokenize", {"prompt": text})
    out = json.loads(body)
    check(status == 200 and out["tokens"] == hf.encode(text, add_special_tokens=False).ids, f"{status} {out}")
    check(out["count"] == len(out["tokens"]) and out["max_model_len"] > 0, f"{out}")
    status, _, body = s.request("POST", "/detokenize", {"tokens": out["tokens"]})
    check(status == 200 and json.loads(body)["prompt"] == text, f"{status} {body!r}")
    status, _, body = s.request("POST", "/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    check(status == 200 and json.loads(body)["count"] == len(generate("hi", 1, "--chat")["prompt_ids"]), f"{body!r}")
    status, _, body = s.request("POST", "/detokenize", {"tokens": [10 ** 9]})
    check(status == 400 and json.loads(body)["error"]["param"] == "tokens", f"{status} {body!r}")


# ---- errors -------------------------------------------------------------------------------

def check_error(status, body, want_status, param=None):
    check(status == want_status, f"status {status}, wanted {want_status}: {body[:300]!r}")
    err = json.loads(body)["error"]
    check(set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str) and err["message"],
          f"error shape {err}")
    check(MARK not in err["message"], f"message echoes the input: {err['message']}")
    if want_status == 400:
        check(err["type"] == "invalid_request_error", f"type {err['type']}")
    if param is not None:
        check(err["param"] == param, f"param {err['param']}, wanted {param}")
    return err


@case
def bad_requests_get_400():
    s = server()
    ok = {"prompt": MARK, "max_tokens": 2, "temperature": 0}
    chat = {"messages": [{"role": "user", "content": MARK}], "max_tokens": 2}
    cases = [
        ("/v1/completions", b'{"prompt": "' + MARK.encode() + b'", "max_tokens": ', None),
        ("/v1/completions", b'{"prompt": "\xff\xfe' + MARK.encode() + b'"}', None),
        ("/v1/completions", b'{"prompt": "a\\u0000' + MARK.encode() + b'"}', None),
        ("/v1/completions", b'[1, 2, 3]', None),
        ("/v1/completions", b'{"prompt": "x", "prompt": "' + MARK.encode() + b'"}', None),
        ("/v1/completions", {**ok, "temperature": 5}, "temperature"),
        ("/v1/completions", {**ok, "temperature": "hot"}, "temperature"),
        ("/v1/completions", {**ok, "top_p": 0}, "top_p"),
        ("/v1/completions", {**ok, "top_k": -2}, "top_k"),
        ("/v1/completions", {**ok, "max_tokens": 0}, "max_tokens"),
        ("/v1/completions", {**ok, "max_tokens": 10 ** 6}, "max_tokens"),
        ("/v1/completions", {**ok, "max_tokens": 10 ** 30}, None),  # beyond int64: a JSON error
        ("/v1/completions", {**ok, "n": 2}, "n"),
        ("/v1/completions", {**ok, "logprobs": 9}, "logprobs"),
        ("/v1/completions", {**ok, "stop": ""}, "stop"),
        ("/v1/completions", {**ok, "stop": [MARK] * 17}, "stop"),
        ("/v1/completions", {**ok, "seed": 1.5}, "seed"),
        ("/v1/completions", {**ok, "stream_options": {"include_usage": True}}, "stream_options"),
        ("/v1/completions", {**ok, "prompt": [[1, 2], [3]]}, "prompt"),
        ("/v1/completions", {**ok, "prompt": [-1]}, "prompt"),
        ("/v1/completions", {**ok, "prompt": ""}, "prompt"),
        ("/v1/completions", {"max_tokens": 2}, "prompt"),
        ("/v1/completions", {**ok, "echo": True}, "echo"),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "wizard", "content": MARK}]}, "messages"),
        ("/v1/chat/completions", {**chat, "messages": []}, "messages"),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
        ("/v1/chat/completions", {**chat, "top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {**chat, "logprobs": True, "top_logprobs": 6}, "top_logprobs"),
        ("/v1/chat/completions", {**chat, "stream": "yes"}, "stream"),
    ]
    for path, body, param in cases:
        status, _, resp = s.request("POST", path, body, {"Content-Type": "application/json"})
        err = check_error(status, resp, 400, param)
        if param == "max_tokens" and body["max_tokens"] == 10 ** 6:
            check(err["code"] == "context_length_exceeded", f"code {err['code']}")
    try:  # through the official client too
        s.client().completions.create(model=NAME, prompt="x", max_tokens=2, temperature=-1)
        raise AssertionError("temperature -1 accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body["param"] == "temperature", f"{e.body}")
    # an announced oversized body is refused before it is sent ...
    out = raw_exchange(s.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3145728\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413 "), f"{out[:60]!r}")
    check_error(413, out.split(b"\r\n\r\n", 1)[1], 413)
    # ... and a chunked one once it passes the cap (64 KiB on this server)
    f = server("fuzz")
    c = http.client.HTTPConnection("127.0.0.1", f.port, timeout=LIVE_S)
    c.request("POST", "/v1/completions", body=iter([b'{"prompt": "', b"a" * 50000, b"b" * 50000, b'"}']),
              encode_chunked=True)
    r = c.getresponse()
    check_error(r.status, r.read(), 413)
    c.close()


@case
def not_found_and_method():
    s = server()
    status, _, body = s.request("GET", "/v1/nothing-" + MARK)
    check_error(status, body, 404)
    status, _, body = s.request("POST", "/v1/completions", {"model": "other-" + MARK, "prompt": "x", "max_tokens": 1})
    check_error(status, body, 404, "model")
    try:
        s.client().completions.create(model="gpt-" + MARK, prompt="x", max_tokens=1)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError:
        pass
    status, _, body = s.request("GET", "/v1/completions")
    check_error(status, body, 405)


# ---- scheduling -----------------------------------------------------------------------------

@case
def cancel_on_hang_up():
    s = server()
    before = s.metrics()
    stream = s.client().chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "go"}], max_tokens=3000, temperature=0, stream=True,
        extra_body={"ignore_eos": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break  # the first generated text
    stream.close()
    key = 'mk_request_finish_total{reason="cancelled"}'
    wait_for(lambda: s.metrics()[key] > before[key] and s.metrics()["mk_running_requests"] == 0,
             "the hung-up request to end")
    made = s.metrics()["mk_generation_tokens_total"] - before["mk_generation_tokens_total"]
    check(made < 300, f"the cancelled request went on for {made} tokens")
    # a whole (non-streaming) answer: the client gives up waiting and closes the socket
    before = s.metrics()
    try:
        s.request("POST", "/v1/completions", {"prompt": "go", "max_tokens": 3000, "ignore_eos": True}, timeout=2)
        raise AssertionError("a 3000-token answer came within 2 s")
    except socket.timeout:
        pass
    wait_for(lambda: s.metrics()[key] > before[key] and s.metrics()["mk_running_requests"] == 0,
             "the abandoned request to end")
    t0 = time.time()
    r = s.client().completions.create(model=NAME, prompt="next", max_tokens=2, temperature=0)
    check(r.choices[0].finish_reason in ("length", "stop") and time.time() - t0 < LIVE_S, "next request")


def one_request(cl, k):
    """Request k of 8 kinds (completion/chat, greedy/seeded, streaming or not): its text."""
    prompt = f"Request {k}: tell me about item {k * 7}"
    kw = {"max_tokens": 3, "temperature": 0 if k % 2 == 0 else 0.8, "seed": 100 + k}
    stream = k % 4 >= 2
    if k % 3 == 0:
        r = cl.chat.completions.create(model=NAME, messages=[{"role": "user", "content": prompt}], stream=stream, **kw)
        return "".join(c.choices[0].delta.content or "" for c in r) if stream else r.choices[0].message.content
    r = cl.completions.create(model=NAME, prompt=prompt, stream=stream, **kw)
    return "".join(c.choices[0].text for c in r if c.choices) if stream else r.choices[0].text


@case
def concurrent_clients_64():
    s = server()
    alone = [one_request(s.client(), k) for k in range(8)]
    results, errors = [None] * 64, []

    def worker(i):
        try:
            results[i] = one_request(s.client(), i % 8)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=4 * LIVE_S)
    check(not errors, f"{len(errors)} failed: {errors[:3]}")
    bad = [i for i in range(64) if results[i] != alone[i % 8]]
    check(not bad, f"{len(bad)} differ from the request alone, e.g. {bad[:3]}: {results[bad[0]]!r} vs "
                   f"{alone[bad[0] % 8]!r}" if bad else "")


@case
def api_key_and_full_queue():
    s = server("small")
    status, _, _ = s.request("GET", "/health")
    check(status == 200, "health needs no key")
    for key in ("none", KEY + "x"):
        try:
            s.client(key=key).models.list()
            raise AssertionError("wrong key accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, f"{e}")
    status, _, body = s.request("POST", "/v1/completions", {"prompt": MARK})
    check_error(status, body, 401)
    cl = s.client(key=KEY)
    # A runs (batch of 1), B waits (queue of 1), C is refused at once
    a = cl.completions.create(model=NAME, prompt="A", max_tokens=3000, temperature=0, stream=True,
                              extra_body={"ignore_eos": True})
    next(iter(a))
    b_out = {}
    b = threading.Thread(target=lambda: b_out.update(r=cl.completions.create(model=NAME, prompt="B", max_tokens=2,
                                                                              temperature=0)))
    b.start()
    wait_for(lambda: s.metrics()["mk_queue_depth"] == 1, "B to be queued")
    try:
        cl.completions.create(model=NAME, prompt="C", max_tokens=2)
        raise AssertionError("a full queue accepted C")
    except openai.RateLimitError as e:
        check(e.status_code == 429 and e.body["type"] == "rate_limit_error", f"{e.body}")
    a.close()
    b.join(timeout=LIVE_S)
    check("r" in b_out and b_out["r"].choices[0].finish_reason in ("length", "stop"), "B did not complete")


@case
def deadline_ends_with_timeout():
    s = server("fuzz")  # --timeout 1
    r = s.client().completions.create(model=NAME, prompt="long", max_tokens=200, temperature=0,
                                      extra_body={"ignore_eos": True})
    check(r.choices[0].finish_reason == "timeout" and r.usage.completion_tokens < 200, f"{r.choices[0]} {r.usage}")
    chunks = list(s.client().completions.create(model=NAME, prompt="long", max_tokens=200, temperature=0, stream=True,
                                                extra_body={"ignore_eos": True}))
    check(chunks[-1].choices[0].finish_reason == "timeout", f"{chunks[-1]}")


# ---- fuzz -------------------------------------------------------------------------------------

SEEDS = [
    ("/v1/completions", {"model": NAME, "prompt": "fuzz", "max_tokens": 2, "temperature": 0.5, "top_p": 0.9,
                         "top_k": 5, "seed": 7, "stop": ["x", "yz"], "logprobs": 2, "stream": True,
                         "stream_options": {"include_usage": True}}),
    ("/v1/chat/completions", {"model": NAME, "messages": [{"role": "system", "content": "s"},
                                                          {"role": "user", "content": "u"}],
                              "max_tokens": 2, "logprobs": True, "top_logprobs": 1, "stream": False}),
    ("/tokenize", {"prompt": "abc"}),
    ("/detokenize", {"tokens": [1, 2, 3]}),
]
ODD = [None, True, -1, 0, 1, 2 ** 31, -2 ** 63, 2 ** 64, 1e308, -0.0, 0.5, "", "\u0000", "é" * 50, [], {}, [[[]]],
       {"a": {"b": [1, "x"]}}, "x" * 5000, 255, 3]


def mutate(rng, v, depth=0):
    if isinstance(v, dict) and v and (depth == 0 or rng.random() < 0.7):
        v = dict(v)
        k = rng.choice(list(v))
        r = rng.random()
        if r < 0.2:
            del v[k]
        elif r < 0.3:
            v[MARK + str(rng.randrange(9))] = rng.choice(ODD)
        else:
            v[k] = mutate(rng, v[k], depth + 1)
        return v
    if isinstance(v, list) and v and rng.random() < 0.6:
        v = list(v)
        i = rng.randrange(len(v))
        v[i] = mutate(rng, v[i], depth + 1)
        return v
    return rng.choice(ODD)


def raw_exchange(port, data, read_s=LIVE_S):
    """Send raw bytes, half-close, return what came back (b'' if nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as so:
        try:  # a server may answer (431, 413) and close before it has read everything
            so.sendall(data)
            so.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while True:
                b = so.recv(65536)
                if not b:
                    break
                out += b
        except socket.timeout:
            pass
        return out


def fuzz_body(rng):
    path, body = rng.choice(SEEDS)
    for _ in range(rng.randrange(1, 4)):
        body = mutate(rng, body)
    body = json.dumps(body).encode()
    r = rng.random()
    if r < 0.15:
        body = body[:rng.randrange(len(body) + 1)]
    elif r < 0.25:
        i = rng.randrange(len(body) + 1)
        body = body[:i] + bytes([rng.choice([0x80, 0xC3, 0xE2, 0xF0, 0xFF, 0x00])]) + body[i:]
    elif r < 0.3:
        body = body * rng.randrange(2, 20)
    return path, body


@case
def fuzz_bodies_and_headers():
    s = server("fuzz")
    rng = random.Random(11)
    for i in range(260):
        path, body = fuzz_body(rng)
        headers = {"Content-Type": rng.choice(["application/json", "text/plain", "\u00e9", "multipart/form-data"])}
        if rng.random() < 0.1:
            headers["Authorization"] = rng.choice(["Bearer", "Bearer \u00ff" * 3, "x" * 2000])
        if rng.random() < 0.05:
            headers["X-Big"] = "y" * 100000
        if len(body) > FUZZ_MAX_BODY:  # refused before it is read: ask without sending it
            out = raw_exchange(s.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            check(out.startswith(b"HTTP/1.1 413 "), f"request {i}: {out[:60]!r}")
            continue
        try:
            status, _, resp = s.request("POST", path, body, {k: v.encode("latin-1", "replace").decode("latin-1")
                                                             for k, v in headers.items()})
        except (ConnectionError, http.client.HTTPException) as e:
            # The server may answer an oversized header (431) and close while the client is
            # still sending; then the same bytes sent raw must still get an HTTP answer.
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("utf-8")
            out = raw_exchange(s.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               f"{len(body)}\r\n".encode() + head + b"\r\n" + body)
            check(re.match(rb"HTTP/1\.[01] [1-5]\d\d ", out) is not None,
                  f"request {i} to {path}: no HTTP answer ({e!r}), raw: {out[:60]!r}")
            check(s.proc.poll() is None, f"the server died on request {i}")
            continue
        check(100 <= status < 600, f"status {status}")
        if status >= 400 and status != 431 and resp:
            check_error(status, resp, status)
        check(s.proc.poll() is None, f"the server died on request {i}")
    raw = [b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff garbage\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 5\r\n\r\n{\"pr", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
           b"\r\n\r\nZZ\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 200000 + b"\r\n\r\n",
           b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"]
    for data in raw:
        out = raw_exchange(s.port, data)
        check(out == b"" or out.startswith(b"HTTP/1."), f"not HTTP: {out[:80]!r}")
        check(s.proc.poll() is None, f"the server died on raw input {data[:40]!r}")
    status, _, _ = s.request("GET", "/health")
    check(status == 200, f"health after fuzz {status}")


@case
def load_generator_runs():
    s = server()
    out = os.path.join(TMP, "serve_load.jsonl")
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run(["python3", os.path.join(ROOT, "bench", "serve_load.py"), "--url", f"http://127.0.0.1:{s.port}",
                        "--concurrency", "1,2", "--num-prompts", "2", "--input-len", "8", "--output-len", "3",
                        "--out", out], capture_output=True, text=True, timeout=4 * LIVE_S)
    check(r.returncode == 0, r.stderr[-2000:])
    rows = [json.loads(line) for line in open(out)]
    tests = [f"serve-{m}-{p}" for m in ("ttft", "tpot", "itl") for p in ("p50", "p99")]
    check([(r["batch"], r["test"]) for r in rows] == [(c, t) for c in (1, 2) for t in tests], f"{rows}")
    for row in rows:
        check(row["system"] == "mk" and row["model"] == NAME and row["ms"] > 0, f"{row}")
        check(row["completed"] == 2 and row["failed"] == 0 and row["input_len"] == 8, f"{row}")
    p50, p99 = rows[0]["ms"], rows[1]["ms"]
    check(p50 <= p99, f"ttft p50 {p50} > p99 {p99}")


@case
def servers_exit_cleanly():
    """SIGTERM: exit 0 and nothing from the sanitizers, one server with a request running
    and one queued when the signal comes."""
    s = server("small")
    cl = s.client(key=KEY)
    a = cl.completions.create(model=NAME, prompt="A", max_tokens=3000, stream=True, extra_body={"ignore_eos": True})
    next(iter(a))
    def queued():
        try:
            cl.completions.create(model=NAME, prompt="B", max_tokens=2)
        except openai.APIConnectionError:
            pass  # the server stops under it

    threading.Thread(target=queued, daemon=True).start()
    wait_for(lambda: s.metrics()["mk_queue_depth"] == 1, "B to be queued")
    for name in list(_servers):
        rc, err = _servers.pop(name).stop()
        check(rc == 0, f"{name}: exit {rc}: {err[-3000:]}")
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error", "MK_ASSERT", "Assertion"):
            check(bad not in err, f"{name}: {bad} in stderr: {err[-3000:]}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for srv in _servers.values():
            srv.proc.kill()
