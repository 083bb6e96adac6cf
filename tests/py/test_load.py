"""Checkpoint loading through `mk info`, on checkpoints written by the Python `safetensors`
package (an independent writer): single file and sharded, f32/f16/bf16, then one
malformed file per validation rule, each with its own error text, exit 1 and no
sanitizer report; bad arguments exit 2."""
import json
import os
import shutil
import struct

import numpy as np
from safetensors.numpy import save_file, load_file

from mkt import case, check, main, mk, tmpdir

V, H, I, L, NH, KV, D = 64, 32, 48, 2, 4, 2, 16


def config(family="qwen3", dtype="float16", tied=True, **extra):
    c = dict(model_type=family, vocab_size=V, hidden_size=H, intermediate_size=I,
             num_hidden_layers=L, num_attention_heads=NH, num_key_value_heads=KV, head_dim=D,
             max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1e6,
             tie_word_embeddings=tied, torch_dtype=dtype, eos_token_id=[1, 2], bos_token_id=0)
    c.update(extra)
    return c


def tensors(cfg, dt=np.float16, seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dt)
    fam = cfg["model_type"]
    t = {"model.embed_tokens.weight": r(V, H), "model.norm.weight": r(H)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = r(H)
        t[p + "post_attention_layernorm.weight"] = r(H)
        t[p + "self_attn.q_proj.weight"] = r(NH * D, H)
        t[p + "self_attn.k_proj.weight"] = r(KV * D, H)
        t[p + "self_attn.v_proj.weight"] = r(KV * D, H)
        t[p + "self_attn.o_proj.weight"] = r(H, NH * D)
        if fam == "qwen2":
            for n, m in (("q", NH), ("k", KV), ("v", KV)):
                t[p + f"self_attn.{n}_proj.bias"] = r(m * D)
        if fam == "qwen3":
            t[p + "self_attn.q_norm.weight"] = r(D)
            t[p + "self_attn.k_norm.weight"] = r(D)
        t[p + "mlp.gate_proj.weight"] = r(I, H)
        t[p + "mlp.up_proj.weight"] = r(I, H)
        t[p + "mlp.down_proj.weight"] = r(H, I)
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = r(V, H)
    return t


def new_dir(name, cfg):
    d = tmpdir("load/" + name)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def single(name, cfg, t):
    d = new_dir(name, cfg)
    save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    return d


def sharded(name, cfg, t, nshards=3):
    d = new_dir(name, cfg)
    names = sorted(t)
    wm = {}
    for s in range(nshards):
        fn = f"model-{s + 1:05d}-of-{nshards:05d}.safetensors"
        part = {k: t[k] for k in names[s::nshards]}
        save_file(part, os.path.join(d, fn))
        wm.update({k: fn for k in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.nbytes for v in t.values())}, "weight_map": wm}, f)
    return d


def read_st(path):
    """(header dict, data bytes) of a safetensors file."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write_st(path, header, data, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def to_bf16(path):
    """Relabel the U16 tensors the numpy writer wrote (bf16 bit patterns) as BF16."""
    hdr, data = read_st(path)
    for k, v in hdr.items():
        if k != "__metadata__" and v["dtype"] == "U16":
            v["dtype"] = "BF16"
    write_st(path, hdr, data)


def info(d, *args):
    r = mk("info", d, "--json", *args)
    check(r.returncode == 0, f"mk info {d}: exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


def fails(d, want, code=1):
    r = mk("info", d)
    check(r.returncode == code, f"{d}: exit {r.returncode}, want {code}; stderr: {r.stderr}")
    check(want in r.stderr, f"{d}: stderr lacks {want!r}: {r.stderr!r}")
    check("Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr)
    return r.stderr


def params_of(t):
    return sum(v.size for v in t.values())


def step_bytes(cfg):
    q, kv = NH * D, KV * D
    layer = 2 * H + q * H + 2 * kv * H + H * q + 3 * I * H
    layer += (q + 2 * kv) if cfg["model_type"] == "qwen2" else 0
    layer += 2 * D if cfg["model_type"] == "qwen3" else 0
    return 2 * (L * layer + H + H + V * H)


@case
def single_f16_qwen3():
    cfg = config()
    t = tensors(cfg)
    j = info(single("single_f16", cfg, t), "--touch")
    check(j["family"] == "qwen3" and j["tied"] is True and j["qk_norm"] is True, j)
    check(j["params"] == params_of(t), (j["params"], params_of(t)))
    check(j["step_bytes"] == step_bytes(cfg), (j["step_bytes"], step_bytes(cfg)))
    check(j["bytes"] == {"f16": sum(v.nbytes for v in t.values())}, j["bytes"])
    check(j["tensors"] == len(t) and j["files"] == 1, j)
    check(j["touch_bytes"] == sum(v.nbytes for v in t.values()), j)
    check(j["eos_token_ids"] == [1, 2] and j["bos_token_id"] == 0, j)


@case
def single_f32_llama3_rope_untied():
    cfg = config("llama", "float32", tied=False, rope_scaling=dict(
        rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=64))
    t = tensors(cfg, np.float32)
    d = single("single_f32", cfg, t)
    j = info(d)
    check(j["family"] == "llama" and j["rope_type"] == "llama3" and j["tied"] is False, j)
    check(j["params"] == params_of(t) and j["dtype"] == "f32", j)
    r = mk("info", d)
    check(r.returncode == 0 and "llama3 factor 32" in r.stdout and "step_bytes:" in r.stdout, r.stdout)


@case
def bf16_qwen2_with_bias():
    cfg = config("qwen2", "bfloat16", tied=False)
    t = {k: (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
         for k, v in tensors(cfg, np.float32).items()}
    d = single("bf16", cfg, t)
    to_bf16(os.path.join(d, "model.safetensors"))
    j = info(d)
    check(j["family"] == "qwen2" and j["qkv_bias"] is True and j["dtype"] == "bf16", j)
    check(j["params"] == params_of(t) and j["step_bytes"] == step_bytes(cfg), j)


@case
def sharded_matches_single():
    cfg = config("mistral", "float16", tied=False)
    t = tensors(cfg)
    a = info(single("cmp_single", cfg, t))
    b = info(sharded("cmp_sharded", cfg, t, 3))
    check(b["files"] == 3 and a["files"] == 1, (a["files"], b["files"]))
    for k in ("params", "step_bytes", "bytes", "tensors", "family"):
        check(a[k] == b[k], f"{k}: single {a[k]} vs sharded {b[k]}")


@case
def reads_back_what_the_writer_wrote():
    # the reference reader agrees on names, dtypes and shapes of what mk accepted
    cfg = config()
    t = tensors(cfg)
    d = single("roundtrip", cfg, t)
    back = load_file(os.path.join(d, "model.safetensors"))
    check(sorted(back) == sorted(t), "names")
    check(info(d)["tensors"] == len(back), "count")


# ---- one malformed safetensors file per rule ------------------------------------------

def good_dir(name):
    cfg = config()
    return single("bad_" + name, cfg, tensors(cfg))


def corrupt(name, mutate):
    """A valid checkpoint whose model.safetensors is rewritten by mutate(hdr, data) ->
    (header dict or raw bytes, data) or raw file bytes."""
    d = good_dir(name)
    p = os.path.join(d, "model.safetensors")
    hdr, data = read_st(p)
    out = mutate(hdr, data)
    if isinstance(out, bytes):
        open(p, "wb").write(out)
    elif isinstance(out[0], bytes):
        write_st(p, None, out[1], raw_header=out[0])
    else:
        write_st(p, out[0], out[1])
    return d


def entry(hdr, name="model.norm.weight"):
    return hdr[name]


def set_field(name, field, value):
    def m(hdr, data):
        entry(hdr, name)[field] = value
        return hdr, data
    return m


def shifted(hdr, _, by, data, only=None):
    """Move the data_offsets of every tensor (or of `only`) by `by` bytes."""
    for k, e in hdr.items():
        if k != "__metadata__" and (only is None or k == only):
            e["data_offsets"] = [e["data_offsets"][0] + by, e["data_offsets"][1] + by]
    return hdr, data


def last_tensor(hdr):
    return max((k for k in hdr if k != "__metadata__"), key=lambda k: hdr[k]["data_offsets"][1])


MALFORMED = {
    "short_file": (lambda h, d: b"\x01\x02\x03", "too short for the 8-byte header length"),
    "header_too_big": (lambda h, d: struct.pack("<Q", 100_000_001) + b"{}" + bytes(64),
                       "header length 100000001 exceeds the limit"),
    "header_past_end": (lambda h, d: struct.pack("<Q", 4096) + b"{}", "runs past the end of the"),
    "header_not_object": (lambda h, d: (b"[1, 2]", b""), "header does not start with a JSON object"),
    "header_bad_utf8": (lambda h, d: (b'{"a\xc3\x28":{}}', b""), "header: invalid JSON"),
    "header_bad_json": (lambda h, d: (b'{"a": {"dtype": ', b""), "header: invalid JSON at line 1"),
    "duplicate_key": (lambda h, d: (json.dumps(h).encode()[:-1] + b', "model.norm.weight": '
                                    + json.dumps(h["model.norm.weight"]).encode() + b"}", d),
                      "duplicate object key"),
    "metadata_not_string": (lambda h, d: ({**h, "__metadata__": {"format": 1}}, d),
                            "__metadata__: format: expected a string, got integer"),
    "extra_field": (lambda h, d: (({**h, "model.norm.weight": {**h["model.norm.weight"], "foo": 1}}), d),
                    "tensor model.norm.weight: unexpected field \"foo\""),
    "missing_field": (lambda h, d: ({**h, "model.norm.weight": {k: v for k, v in h["model.norm.weight"].items()
                                                                 if k != "shape"}}, d),
                      "tensor model.norm.weight: missing field shape"),
    "unknown_dtype": (set_field("model.norm.weight", "dtype", "F12"), "tensor model.norm.weight: unknown dtype \"F12\""),
    "unsupported_dtype": (set_field("model.norm.weight", "dtype", "F64"),
                          "tensor model.norm.weight: dtype F64 is not supported"),
    "too_many_dims": (set_field("model.norm.weight", "shape", [1] * 9 + [H]), "shape has 10 dims"),
    "dim_over_2_48": (set_field("model.norm.weight", "shape", [2 ** 48]), "shape: 281474976710656 is outside [0, 2^48-1]"),
    "offset_over_2_48": (set_field("model.norm.weight", "data_offsets", [0, 2 ** 48]),
                         "data_offsets: 281474976710656 is outside [0, 2^48-1]"),
    "size_mismatch": (set_field("model.norm.weight", "shape", [H + 1]), "tensor model.norm.weight: f16 shape needs 66 bytes"),
    "size_overflow": (set_field("model.norm.weight", "shape", [2 ** 40, 2 ** 40, 2 ** 40]), "overflows 2^48 bytes"),
    "gap": (lambda h, d: shifted(h, d, 8, b"\0" * 8 + d), "(a gap)"),
    "overlap": (lambda h, d: shifted(h, d[:-2], -2, d[:-2], only=last_tensor(h)), "overlap tensor"),
    "trailing_bytes": (lambda h, d: (h, d + b"\0" * 5), "(5 trailing bytes)"),
    "past_end_of_file": (lambda h, d: (h, d[:-2]), "run past the end of the file"),
}


@case
def malformed_safetensors_one_per_rule():
    texts = set()
    for name, (mutate, want) in MALFORMED.items():
        d = corrupt(name, mutate)
        err = fails(d, want)
        check("model.safetensors: " in err, f"{name}: file not named: {err}")
        texts.add(err)
    check(len(texts) == len(MALFORMED), "two rules gave the same message")


@case
def real_writer_int_tensor_rejected_by_name():
    cfg = config()
    t = tensors(cfg)
    t["model.layers.0.extra_counter"] = np.arange(4, dtype=np.int64)
    fails(single("int64", cfg, t), "tensor model.layers.0.extra_counter: dtype I64 is not supported")


# ---- sharded sets ----------------------------------------------------------------------

def index_of(d):
    p = os.path.join(d, "model.safetensors.index.json")
    return p, json.load(open(p))


@case
def malformed_index_one_per_rule():
    cfg = config()
    t = tensors(cfg)
    cases = {
        "traversal": (lambda ix: ix["weight_map"].__setitem__("model.norm.weight", "../model-00001-of-00003.safetensors"),
                      "weight_map: tensor model.norm.weight: file \"../model-00001-of-00003.safetensors\" is not a plain file name"),
        "absolute": (lambda ix: ix["weight_map"].__setitem__("model.norm.weight", "/etc/passwd"), "\"/etc/passwd\" is not a plain file name"),
        "missing_shard": (lambda ix: ix["weight_map"].__setitem__("model.norm.weight", "nope.safetensors"),
                          "nope.safetensors: cannot open"),
        "unlisted_tensor": (lambda ix: ix["weight_map"].pop("model.norm.weight"),
                            "tensor model.norm.weight is not in the weight_map"),
        "wrong_shard": (lambda ix: ix["weight_map"].__setitem__(
            "model.norm.weight", next(f for f in set(ix["weight_map"].values()) if f != ix["weight_map"]["model.norm.weight"])),
            "weight_map: tensor model.norm.weight: not found in"),
        "not_an_object": (lambda ix: ix.__setitem__("weight_map", []), "weight_map: expected an object, got array"),
    }
    for name, (mutate, want) in cases.items():
        d = sharded("ix_" + name, cfg, t)
        p, ix = index_of(d)
        mutate(ix)
        json.dump(ix, open(p, "w"))
        err = fails(d, want)
        check("model.safetensors.index.json" in err or ".safetensors" in err, err)
    # the same tensor in two shards
    d = sharded("ix_twice", cfg, t)
    p, ix = index_of(d)
    shard = ix["weight_map"]["model.embed_tokens.weight"]
    other = next(f for f in set(ix["weight_map"].values()) if f != shard)
    part = load_file(os.path.join(d, other))
    part["model.embed_tokens.weight"] = t["model.embed_tokens.weight"]
    save_file(part, os.path.join(d, other))
    fails(d, "tensor model.embed_tokens.weight is in both")


# ---- binding and config ----------------------------------------------------------------

@case
def binding_errors():
    cfg = config(dtype="bfloat16")
    fails(single("bind_dtype", cfg, tensors(cfg)),
          "model.safetensors: tensor model.embed_tokens.weight: expected bf16 [64, 32], got f16 [64, 32]")
    cfg = config()
    t = tensors(cfg)
    t["model.layers.1.self_attn.o_proj.weight"] = t["model.layers.1.self_attn.o_proj.weight"][:, :-1].copy()
    fails(single("bind_shape", cfg, t),
          "tensor model.layers.1.self_attn.o_proj.weight: expected f16 [32, 64], got f16 [32, 63]")
    t = tensors(cfg)
    del t["model.layers.0.self_attn.k_norm.weight"]
    fails(single("bind_missing", cfg, t), "missing tensor model.layers.0.self_attn.k_norm.weight")
    t = tensors(cfg)
    t["model.visual.proj"] = t["model.norm.weight"]
    fails(single("bind_extra", cfg, t), "unexpected tensor model.visual.proj")
    t = tensors(cfg)
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(D // 2, np.float32)
    t["lm_head.weight"] = t["model.embed_tokens.weight"]
    j = info(single("bind_tolerated", cfg, t))
    check(j["params"] == params_of(t) - D // 2 - V * H, j["params"])


@case
def config_errors():
    cfg = config()
    t = tensors(cfg)
    for name, patch, want, code in [
        ("kv", dict(num_attention_heads=8, num_key_value_heads=3),
         "config.json: num_key_value_heads = 3 does not divide num_attention_heads = 8", 1),
        ("type", dict(model_type="gemma"), "model_type \"gemma\" is not supported (supported: llama, mistral, qwen2, qwen3)", 1),
        ("rope", dict(rope_scaling=dict(rope_type="yarn", factor=4.0)), "rope_type \"yarn\" is not supported", 1),
        ("eps", dict(rms_norm_eps=2.0), "rms_norm_eps = 2 is outside (0, 1)", 1),
        ("eos", dict(eos_token_id=V), f"eos_token_id: expected an integer in [0, {V - 1}], got {V}", 1),
    ]:
        d = single("cfg_" + name, {**cfg, **patch}, t)
        fails(d, want, code)
    d = single("cfg_gen", cfg, t)
    open(os.path.join(d, "generation_config.json"), "w").write('{"eos_token_id": [2, 3], "top_p": 1.5}')
    fails(d, "generation_config.json: top_p = 1.5 is outside (0, 1]")
    open(os.path.join(d, "generation_config.json"), "w").write('{"eos_token_id": [2, 3], "do_sample": true}')
    check(info(d)["eos_token_ids"] == [1, 2, 3], "eos ids merged from generation_config.json")
    open(os.path.join(d, "config.json"), "w").write('{"model_type": "qwen3", "model_type": "llama"}')
    fails(d, "duplicate object key")


@case
def bad_arguments():
    r = mk("info")
    check(r.returncode == 2 and "missing DIR" in r.stderr, r.stderr)
    r = mk("info", "a", "b")
    check(r.returncode == 2 and "more than one DIR" in r.stderr, r.stderr)
    r = mk("info", "--bogus")
    check(r.returncode == 2, r.stderr)
    r = mk("info", tmpdir("load/empty_dir"))
    check(r.returncode == 1 and "config.json: cannot open" in r.stderr, r.stderr)
    r = mk("info", "--help")
    check(r.returncode == 0 and r.stdout.startswith("usage: mk info"), r.stdout)


if __name__ == "__main__":
    main()
