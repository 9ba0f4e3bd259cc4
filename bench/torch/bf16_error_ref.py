#!/usr/bin/env python3
"""PyTorch side of the bf16 error yardstick for wan-tfjs.

The library's rule for reduced precision: on the same inputs, our bf16 result's error against
an fp32 reference must be at most 1.5x PyTorch bf16's error against that same reference. This
script writes, per case, the inputs, the fp32 reference and PyTorch's bf16 result, with PyTorch
bf16's error; the TypeScript side reads the same inputs, runs the library in bf16 and computes
the same metrics against the same reference.

  python3 bench/torch/bf16_error_ref.py --out DIR [--cases attention,gemm,block,forward,sampling]
      [--frames 81 --height 480 --width 832] [--seed 0] [--yardstick .device/bench/torch_wan_ref.py] [--fp8]

Per case DIR/<case>/: io.safetensors (input.* float32, ref.* = the fp32 reference, torch_bf16.* =
PyTorch's bf16 output upcast to float32), case.json (every tensor: name, meaning, shape; the
metrics), and for the model cases a Diffusers-layout weights folder (config.json +
diffusion_pytorch_model.safetensors, weights stored as bf16): block/transformer (1 layer) and
forward/transformer (30 layers, shared by the sampling case). One JSON line per case on stdout;
progress on stderr.

fp32 references run in float32 with TF32 off (matmul and cuDNN), from the bf16-rounded weights, so
the only difference between the fp32 and bf16 runs is the arithmetic (and the rounding of the
activations/inputs to bf16, which both bf16 runs do). Attention in fp32 goes through SDPA's
memory-efficient backend (forced), so no O(L^2) buffer is ever made.

With --fp8 the model cases' block weights (every 2-D weight under blocks.) are quantized as ComfyUI's
fp8_scaled files are (s = amax|w| / 448, q = e4m3fn(w / s)) and stored that way (F8_E4M3 codes and a
float32 `<layer>.scale_weight`); both runs use w = float(q) * s (the bf16 run rounds it to bf16, as
PyTorch users run an fp8 checkpoint), so the reference is the fp32 forward of the weights the file
holds. The TypeScript side then judges its fp8 paths (dequantize per layer; WAN_FP8_GEMM) on the same
file.

Metrics, in float64 over the whole tensor: rel_l2 = ||out - ref||_2 / ||ref||_2,
max_abs = max |out - ref|; sampling also psnr_db = 20 log10(max|ref| / RMSE).
"""
import argparse
import hashlib
import importlib
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

T0 = time.perf_counter()
ALL_CASES = ["attention", "gemm", "block", "forward", "sampling"]
RULE = ("on the same inputs, our bf16 result's error against ref must be at most 1.5x torch_bf16's error "
        "against the same ref (rel_l2 and max_abs)")
METRICS_DOC = {
    "rel_l2": "||out - ref||_2 / ||ref||_2, float64 over the whole tensor",
    "max_abs": "max |out - ref|, float64 over the whole tensor",
    "psnr_db": "sampling only: 20*log10(max|ref| / RMSE), RMSE = sqrt(mean((out - ref)^2)), float64",
}
SHIFT = 3.0
NUM_STEPS = 4


def log(msg):
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- environment

def disable_tf32():
    """fp32 matmul and cuDNN conv in IEEE fp32 (no TF32), through whichever API this torch has."""
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9: new API only (mixing raises)
        b = torch.backends
        for name, obj in (("torch.backends", b), ("torch.backends.cuda.matmul", b.cuda.matmul),
                          ("torch.backends.cudnn", b.cudnn), ("torch.backends.cudnn.conv", getattr(b.cudnn, "conv", None)),
                          ("torch.backends.cudnn.rnn", getattr(b.cudnn, "rnn", None))):
            try:
                obj.fp32_precision = "ieee"
            except Exception as e:  # noqa: BLE001 - verify_fp32 checks the outcome
                log(f"could not set {name}.fp32_precision: {type(e).__name__}: {e}")
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")


def _read(get):
    try:
        v = get()
        return v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return f"unavailable: {type(e).__name__}: {e}"


def precision_flags():
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        flags = {
            "torch.backends.fp32_precision": _read(lambda: b.fp32_precision),
            "torch.backends.cuda.matmul.fp32_precision": _read(lambda: b.cuda.matmul.fp32_precision),
            "torch.backends.cudnn.fp32_precision": _read(lambda: b.cudnn.fp32_precision),
            "torch.backends.cudnn.conv.fp32_precision": _read(lambda: b.cudnn.conv.fp32_precision),
        }
    else:
        flags = {
            "torch.backends.cuda.matmul.allow_tf32": _read(lambda: b.cuda.matmul.allow_tf32),
            "torch.backends.cudnn.allow_tf32": _read(lambda: b.cudnn.allow_tf32),
            "float32_matmul_precision": _read(torch.get_float32_matmul_precision),
        }
    flags["torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction"] = _read(
        lambda: b.cuda.matmul.allow_bf16_reduced_precision_reduction)
    return flags


def sdp_flags():
    c = torch.backends.cuda
    out = {}
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "cudnn_sdp_enabled", "math_sdp_enabled"):
        fn = getattr(c, name, None)
        out[f"torch.backends.cuda.{name}()"] = _read(fn) if fn is not None else "absent"
    return out


def environment(dev, yardstick_path):
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _read(torch.backends.cudnn.version),
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "capability": list(torch.cuda.get_device_capability()) if dev == "cuda" else None,
        "precision_flags": precision_flags(),
        "sdp_enabled_global": sdp_flags(),
    }
    if yardstick_path:
        with open(yardstick_path, "rb") as f:
            env["yardstick"] = {"path": yardstick_path, "sha256": hashlib.sha256(f.read()).hexdigest()}
    return env


def verify_fp32(dev):
    """Checks that fp32 matmul and cuDNN conv really run in IEEE fp32 (TF32 would be ~1e-4..1e-3 off)."""
    g = torch.Generator(device=dev)
    g.manual_seed(1234)
    a = torch.randn(2048, 2048, generator=g, device=dev)
    b = torch.randn(2048, 2048, generator=g, device=dev)
    e = a.double() @ b.double()
    mm = (torch.linalg.vector_norm((a @ b).double() - e) / torch.linalg.vector_norm(e)).item()
    x = torch.randn(1, 16, 4, 32, 32, generator=g, device=dev)
    w = torch.randn(256, 16, 1, 2, 2, generator=g, device=dev)
    e = F.conv3d(x.double(), w.double(), stride=(1, 2, 2))
    cv = (torch.linalg.vector_norm(F.conv3d(x, w, stride=(1, 2, 2)).double() - e) / torch.linalg.vector_norm(e)).item()
    out = {"matmul_2048_rel_l2_vs_fp64": mm, "conv3d_rel_l2_vs_fp64": cv}
    if not (mm < 1e-5 and cv < 1e-5):
        raise SystemExit(f"fp32 arithmetic is not IEEE fp32 (TF32 still on?): {out}")
    return out


def fp32_sdpa():
    """Context forcing SDPA's memory-efficient backend (the fp32 path that makes no L x L buffer)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])


FP32_SDPA_NOTE = ("fp32 runs are wrapped in torch.nn.attention.sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]) "
                  "(memory-efficient backend, no LxL buffer); bf16 runs use SDPA's default backend choice")


def traced(fn):
    """Runs fn() under the CPU profiler; returns (result, {attention aten op: count}) naming the SDPA backend."""
    ops = None
    prof = None
    try:
        from torch.profiler import ProfilerActivity, profile
        prof = profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
    except Exception as e:  # noqa: BLE001
        prof, ops = None, f"profiler unavailable: {type(e).__name__}: {e}"
    try:
        out = fn()
        sync()
    finally:
        if prof is not None:
            try:
                prof.__exit__(None, None, None)
                ops = {}
                for ev in prof.key_averages():
                    k = ev.key
                    if k.startswith("aten::") and ("attention" in k or "scaled_dot_product" in k):
                        ops[k] = ops.get(k, 0) + ev.count
            except Exception as e:  # noqa: BLE001
                ops = f"profiler failed: {type(e).__name__}: {e}"
    return out, ops


# ----------------------------------------------------------------------------- helpers

def gens(seed, case_id, dev):
    """(device generator for bulk normals, CPU generator for index draws), one pair per case."""
    s = seed * 1000 + case_id
    g = torch.Generator(device=dev)
    g.manual_seed(s)
    gc = torch.Generator()
    gc.manual_seed(s + 500)
    return g, gc


def randn(shape, g, dev):
    return torch.randn(shape, generator=g, device=dev, dtype=torch.float32)


def scale_entries(t, frac, factor, gc):
    """Multiplies a random fraction of the entries of the contiguous tensor t by factor (in place)."""
    n = t.numel()
    m = max(1, int(round(n * frac)))
    idx = torch.randint(0, n, (m,), generator=gc).to(t.device)
    flat = t.view(-1)
    flat[idx] = flat[idx] * factor
    return m


def pick(n, m, gc):
    return torch.randperm(n, generator=gc)[:m].sort().values


def bf16_round(t):
    return t.to(torch.bfloat16).float()


def metrics(out, ref, psnr=False):
    o, r = out.double(), ref.double()
    d = o - r
    n = d.numel()
    err_l2 = torch.linalg.vector_norm(d).item()
    ref_l2 = torch.linalg.vector_norm(r).item()
    ref_max = r.abs().max().item()
    m = {
        "rel_l2": err_l2 / ref_l2 if ref_l2 > 0 else None,
        "max_abs": d.abs().max().item(),
        "ref_max_abs": ref_max,
        "ref_rms": ref_l2 / math.sqrt(n),
    }
    if psnr:
        rmse = err_l2 / math.sqrt(n)
        m["rmse"] = rmse
        m["psnr_db"] = 20 * math.log10(ref_max / rmse) if rmse > 0 else None
    del o, r, d
    return m


def short(m):
    return {k: m[k] for k in ("rel_l2", "max_abs", "psnr_db") if k in m}


def save_io(path, tensors):
    cpu = {k: v.detach().to(torch.float32).contiguous().cpu() for k, v in tensors.items()}
    save_file(cpu, path, metadata={"format": "pt"})
    size = sum(v.numel() * 4 for v in cpu.values())
    del cpu
    return size


def describe(name, meaning, t):
    return {"name": name, "meaning": meaning, "shape": list(t.shape), "dtype": "float32"}


def clean(v):
    """JSON-safe: non-finite floats become strings ("nan", "inf") so that JSON.parse accepts the file."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def write_case(case_dir, case_json):
    with open(os.path.join(case_dir, "case.json"), "w") as f:
        json.dump(clean(case_json), f, indent=1)


def free():
    sync()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def report(name, torch_bf16, extra=None, started=None):
    line = {"case": name, "torch_bf16": torch_bf16}
    if extra:
        line.update(extra)
    if started is not None:
        line["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(clean(line)), flush=True)


def tokens(a):
    return ((a.frames - 1) // 4 + 1) * (a.height // 16) * (a.width // 16)


def latent_shape(a):
    return [1, 16, (a.frames - 1) // 4 + 1, a.height // 8, a.width // 8]


# ----------------------------------------------------------------------------- case: attention

def sdpa_bshd(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def attention_fp64(q, k, v, chunk=1024):
    """Exact-ish float64 attention, chunked over queries (check of the fp32 reference itself)."""
    _, L, H, D = q.shape
    kd = k[0].double().permute(1, 2, 0)  # [H, D, Lk]
    vd = v[0].double().transpose(0, 1)  # [H, Lk, D]
    out = torch.empty(L, H, D, dtype=torch.float64, device=q.device)
    scale = 1.0 / math.sqrt(D)
    for s in range(0, L, chunk):
        qc = q[0, s:s + chunk].double().transpose(0, 1)  # [H, c, D]
        p = torch.softmax(torch.matmul(qc, kd) * scale, dim=-1)  # [H, c, Lk]
        out[s:s + chunk] = torch.matmul(p, vd).transpose(0, 1)
        del qc, p
    return out.unsqueeze(0)


def case_attention(a, dev, env):
    t0 = time.perf_counter()
    d = os.path.join(a.out, "attention")
    os.makedirs(d, exist_ok=True)
    L, H, D, Lt = tokens(a), 12, 128, 512
    g, gc = gens(a.seed, 1, dev)
    q, k, v = randn([1, L, H, D], g, dev), randn([1, L, H, D], g, dev), randn([1, L, H, D], g, dev)
    scale_entries(q, 1e-3, 20.0, gc)
    scale_entries(k, 1e-3, 20.0, gc)
    scale_entries(v, 1e-3, 10.0, gc)
    krows = pick(L, 8, gc)
    k[:, krows.to(dev)] *= 8.0
    kc, vc = randn([1, Lt, H, D], g, dev), randn([1, Lt, H, D], g, dev)
    scale_entries(kc, 1e-3, 20.0, gc)
    scale_entries(vc, 1e-3, 10.0, gc)
    kcrows = pick(Lt, 4, gc)
    kc[:, kcrows.to(dev)] *= 8.0
    log(f"attention: q/k/v [1, {L}, {H}, {D}], cross k/v [1, {Lt}, {H}, {D}]")

    with torch.no_grad():
        with fp32_sdpa():
            (ref_self, ref_cross), ops_ref = traced(lambda: (sdpa_bshd(q, k, v), sdpa_bshd(q, kc, vc)))
        qb, kb, vb, kcb, vcb = (t.to(torch.bfloat16) for t in (q, k, v, kc, vc))
        (bf_self, bf_cross), ops_bf = traced(lambda: (sdpa_bshd(qb, kb, vb).float(), sdpa_bshd(qb, kcb, vcb).float()))
        del qb, kb, vb, kcb, vcb
        ref_self, ref_cross = ref_self.float().contiguous(), ref_cross.float().contiguous()
        log("attention: fp32 and bf16 SDPA done; float64 check of the reference")
        m_self, m_cross = metrics(bf_self, ref_self), metrics(bf_cross, ref_cross)
        check = {}
        for name, (qq, kk, vv, rr, bb) in {"self_attn": (q, k, v, ref_self, bf_self),
                                          "cross_attn": (q, kc, vc, ref_cross, bf_cross)}.items():
            e = attention_fp64(qq, kk, vv)
            check[name] = {"ref_vs_fp64": short(metrics(rr, e)), "torch_bf16_vs_fp64": short(metrics(bb, e))}
            del e
            free()

    io = {
        "input.q": q, "input.k": k, "input.v": v, "input.k_cross": kc, "input.v_cross": vc,
        "ref.self_attn": ref_self, "ref.cross_attn": ref_cross,
        "torch_bf16.self_attn": bf_self, "torch_bf16.cross_attn": bf_cross,
    }
    size = save_io(os.path.join(d, "io.safetensors"), io)
    tensors = [
        describe("input.q", "queries, BSHD; N(0,1) (RMS-normalised magnitudes) with 0.1% of entries x20; "
                 "shared by the self- and the cross-attention", q),
        describe("input.k", "self-attention keys, BSHD; N(0,1), 0.1% of entries x20, and whole key rows (all heads) "
                 f"at token positions {krows.tolist()} x8", k),
        describe("input.v", "self-attention values, BSHD; N(0,1), 0.1% of entries x10", v),
        describe("input.k_cross", "cross-attention keys (text length 512), BSHD; N(0,1), 0.1% of entries x20, "
                 f"whole rows at {kcrows.tolist()} x8", kc),
        describe("input.v_cross", "cross-attention values, BSHD; N(0,1), 0.1% of entries x10", vc),
        describe("ref.self_attn", "fp32 SDPA(q, k, v), scale 1/sqrt(128), no mask, BSHD", ref_self),
        describe("ref.cross_attn", "fp32 SDPA(q, k_cross, v_cross), scale 1/sqrt(128), BSHD", ref_cross),
        describe("torch_bf16.self_attn", "SDPA on the bf16-cast q, k, v (default backend), upcast to fp32", bf_self),
        describe("torch_bf16.cross_attn", "SDPA on the bf16-cast q, k_cross, v_cross, upcast to fp32", bf_cross),
    ]
    case = {
        "case": "attention",
        "description": "multi-head attention at the Wan2.1-1.3B self-attention shape (480x832x81: 32,760 tokens, "
                       "12 heads x 128) and its cross-attention (512 text tokens). Inputs are float32, not "
                       "bf16-rounded: the bf16 runs round them at the cast.",
        "layout": "BSHD [batch, tokens, heads, head_dim]; SDPA is called on the BHSD transposes",
        "scale": 1.0 / math.sqrt(D),
        "rule": RULE, "metrics_definition": METRICS_DOC,
        "tensors": tensors,
        "outputs": {
            "self_attn": {"inputs": ["input.q", "input.k", "input.v"], "ref": "ref.self_attn",
                          "torch_bf16": "torch_bf16.self_attn"},
            "cross_attn": {"inputs": ["input.q", "input.k_cross", "input.v_cross"], "ref": "ref.cross_attn",
                           "torch_bf16": "torch_bf16.cross_attn"},
        },
        "torch_bf16_metrics": {"self_attn": m_self, "cross_attn": m_cross},
        "reference_check": {"note": "fp32 ref and torch bf16 against a float64 attention (chunked over queries); "
                                    "ref_vs_fp64 should be far below torch_bf16_vs_fp64", **check},
        "sdpa": {"note": FP32_SDPA_NOTE, "ref_ops": ops_ref, "torch_bf16_ops": ops_bf},
        "env": env, "io_bytes": size,
    }
    write_case(d, case)
    report("attention", {"self_attn": short(m_self), "cross_attn": short(m_cross)},
           {"ref_vs_fp64_rel_l2": {n: c["ref_vs_fp64"]["rel_l2"] for n, c in check.items()},
            "sdpa_bf16": ops_bf}, t0)
    del q, k, v, kc, vc, ref_self, ref_cross, bf_self, bf_cross, io
    free()


# ----------------------------------------------------------------------------- case: gemm

def case_gemm(a, dev, env):
    t0 = time.perf_counter()
    d = os.path.join(a.out, "gemm")
    os.makedirs(d, exist_ok=True)
    N, K, M = tokens(a), 1536, 8960
    g, gc = gens(a.seed, 2, dev)
    x = randn([N, K], g, dev)
    scale_entries(x, 1e-3, 20.0, gc)
    xcols = pick(K, 4, gc)
    x[:, xcols.to(dev)] *= 8.0
    w = bf16_round(randn([M, K], g, dev) / math.sqrt(K))
    b = bf16_round(0.1 * randn([M], g, dev))
    z = randn([N, M], g, dev)
    scale_entries(z, 1e-3, 20.0, gc)
    x2 = F.gelu(z, approximate="tanh")
    del z
    w2 = bf16_round(randn([K, M], g, dev) / math.sqrt(M))
    b2 = bf16_round(0.1 * randn([K], g, dev))
    log(f"gemm: x [{N}, {K}] . w [{M}, {K}]^T, x2 [{N}, {M}] . w2 [{K}, {M}]^T")

    with torch.no_grad():
        y1 = F.linear(x, w, b)
        y2 = F.gelu(y1, approximate="tanh")
        y3 = F.linear(x2, w2, b2)
        xb, wb, bb, x2b, w2b, b2b = (t.to(torch.bfloat16) for t in (x, w, b, x2, w2, b2))
        y1b = F.linear(xb, wb, bb)
        y2b = F.gelu(y1b, approximate="tanh").float()
        y1b = y1b.float()
        y3b = F.linear(x2b, w2b, b2b).float()
        del xb, wb, bb, x2b, w2b, b2b
        sync()
        m = {"y1": metrics(y1b, y1), "y2": metrics(y2b, y2), "y3": metrics(y3b, y3)}
        log("gemm: fp32 and bf16 done; float64 check of the reference")
        check = {}
        e = F.linear(x.double(), w.double(), b.double())
        check["y1"] = {"ref_vs_fp64": short(metrics(y1, e)), "torch_bf16_vs_fp64": short(metrics(y1b, e))}
        e = F.gelu(e, approximate="tanh")
        check["y2"] = {"ref_vs_fp64": short(metrics(y2, e)), "torch_bf16_vs_fp64": short(metrics(y2b, e))}
        del e
        e = F.linear(x2.double(), w2.double(), b2.double())
        check["y3"] = {"ref_vs_fp64": short(metrics(y3, e)), "torch_bf16_vs_fp64": short(metrics(y3b, e))}
        del e
        free()

    io = {"input.x": x, "input.w": w, "input.b": b, "input.x2": x2, "input.w2": w2, "input.b2": b2,
          "ref.y1": y1, "ref.y2": y2, "ref.y3": y3,
          "torch_bf16.y1": y1b, "torch_bf16.y2": y2b, "torch_bf16.y3": y3b}
    size = save_io(os.path.join(d, "io.safetensors"), io)
    tensors = [
        describe("input.x", "activations (float32, not bf16-rounded); N(0,1), 0.1% of entries x20, "
                 f"whole channels (columns) {xcols.tolist()} x8", x),
        describe("input.w", "weight (out, in) = ffn.net.0.proj shape; N(0, 1/1536), bf16-rounded", w),
        describe("input.b", "bias; N(0, 0.1^2), bf16-rounded", b),
        describe("input.x2", "FFN hidden activations (float32, not bf16-rounded): gelu_tanh(z), z ~ N(0,1) with "
                 "0.1% of entries x20", x2),
        describe("input.w2", "weight (out, in) = ffn.net.2 shape; N(0, 1/8960), bf16-rounded", w2),
        describe("input.b2", "bias; N(0, 0.1^2), bf16-rounded", b2),
        describe("ref.y1", "fp32: x . w^T + b (F.linear, TF32 off)", y1),
        describe("ref.y2", "fp32: gelu_tanh(x . w^T + b)", y2),
        describe("ref.y3", "fp32: x2 . w2^T + b2", y3),
        describe("torch_bf16.y1", "F.linear on bf16 x, w, b (bf16 out), upcast", y1b),
        describe("torch_bf16.y2", "F.gelu(approximate='tanh') of the bf16 y1 (bf16 out), upcast", y2b),
        describe("torch_bf16.y3", "F.linear on bf16 x2, w2, b2, upcast", y3b),
    ]
    case = {
        "case": "gemm",
        "description": "the Wan2.1-1.3B FFN Linear shapes at 32,760 tokens: [L,1536]x[8960,1536]^T (+gelu_tanh) "
                       "and [L,8960]x[1536,8960]^T",
        "rule": RULE, "metrics_definition": METRICS_DOC,
        "tensors": tensors,
        "outputs": {
            "y1": {"inputs": ["input.x", "input.w", "input.b"], "op": "linear", "ref": "ref.y1", "torch_bf16": "torch_bf16.y1"},
            "y2": {"inputs": ["input.x", "input.w", "input.b"], "op": "gelu_tanh(linear)", "ref": "ref.y2",
                   "torch_bf16": "torch_bf16.y2"},
            "y3": {"inputs": ["input.x2", "input.w2", "input.b2"], "op": "linear", "ref": "ref.y3", "torch_bf16": "torch_bf16.y3"},
        },
        "torch_bf16_metrics": m,
        "reference_check": {"note": "fp32 ref and torch bf16 against float64 (DGEMM)", **check},
        "env": env, "io_bytes": size,
    }
    write_case(d, case)
    report("gemm", {k: short(v) for k, v in m.items()},
           {"ref_vs_fp64_rel_l2": {n: c["ref_vs_fp64"]["rel_l2"] for n, c in check.items()}}, t0)
    del x, w, b, x2, w2, b2, y1, y2, y3, y1b, y2b, y3b, io
    free()


# ----------------------------------------------------------------------------- model cases

def model_cfg(Y, num_layers):
    cfg = {**Y.BASE, **Y.PRESETS["wan2.1-1.3b"]}
    cfg["num_layers"] = num_layers
    return cfg


def diffusers_config(cfg):
    return {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(cfg["patch_size"]),
        "num_attention_heads": cfg["num_attention_heads"],
        "attention_head_dim": cfg["attention_head_dim"],
        "in_channels": cfg["in_channels"],
        "out_channels": cfg["out_channels"],
        "text_dim": cfg["text_dim"],
        "freq_dim": cfg["freq_dim"],
        "ffn_dim": cfg["ffn_dim"],
        "num_layers": cfg["num_layers"],
        "cross_attn_norm": cfg["cross_attn_norm"],
        "qk_norm": "rms_norm_across_heads",
        "eps": cfg["eps"],
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": cfg["rope_max_seq_len"],
        "pos_embed_seq_len": None,
    }


INIT_DOC = ("Linear/Conv3d weights N(0, 1/fan_in) (std 1/sqrt(fan_in)), biases N(0, 0.02^2), RMSNorm "
            "(norm_q, norm_k) and LayerNorm (norm2) gains 1 + N(0, 0.1^2), LayerNorm biases N(0, 0.05^2), "
            "scale_shift_tables N(0, 1/dim) (std 1/sqrt(dim)); then rounded to bf16 (the fp32 runs use these "
            "bf16-exact values)")


def build_model(Y, cfg, seed, case_id, dev):
    """The yardstick WanDiT in fp32 on dev with the sensible random init, bf16-rounded."""
    with torch.device("meta"):
        model = Y.WanDiT(cfg)
    model = model.to_empty(device=dev).eval()
    g, _ = gens(seed, case_id, dev)
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = randn(p.shape, g, dev)
            if name.endswith("scale_shift_table"):
                v = r / math.sqrt(dim)
            elif name.endswith(("norm_q.weight", "norm_k.weight", "norm2.weight")):
                v = 1.0 + 0.1 * r
            elif name.endswith("norm2.bias"):
                v = 0.05 * r
            elif name.endswith(".bias"):
                v = 0.02 * r
            elif name.endswith(".weight") and p.ndim >= 2:
                v = r / math.sqrt(math.prod(p.shape[1:]))
            else:
                raise SystemExit(f"no init rule for parameter {name} {list(p.shape)}")
            p.copy_(bf16_round(v))
    for name, buf in model.named_buffers():
        raise SystemExit(f"unexpected buffer {name} in the yardstick model")
    return model


FP8_DOC = ("blocks' 2-D weights quantized per tensor as ComfyUI's fp8_scaled files: s = amax|w| / 448 (float32), "
           "q = float8_e4m3fn(w / s), stored as F8_E4M3 codes with <layer>.scale_weight = s; the models compute "
           "with w = float(q) * s")


def quantize_fp8(model):
    """The blocks' 2-D weights as (e4m3fn codes, float32 scale), and the model's weights set to float(q) * s."""
    codes = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not (name.startswith("blocks.") and name.endswith(".weight") and p.ndim == 2):
                continue
            s = (p.detach().abs().amax().float() / 448.0).reshape([])
            q = (p.detach().float() / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
            p.copy_(q.float() * s)
            codes[name] = (q, s)
    log(f"fp8: {len(codes)} block weights quantized (e4m3fn, per-tensor scale)")
    return codes


def save_weights(model, cfg, folder, fp8=None):
    """The model as a Diffusers folder, bf16; with fp8 (quantize_fp8's codes) those weights as F8_E4M3 + scale_weight."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(diffusers_config(cfg), f, indent=1)
    state = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()}
    for name, (q, s) in (fp8 or {}).items():
        state[name] = q.contiguous().cpu()
        state[name[: -len("weight")] + "scale_weight"] = s.float().cpu()
    save_file(state, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    n = sum(v.numel() for k, v in state.items() if not k.endswith(".scale_weight"))
    del state
    log(f"wrote {folder} ({n / 1e6:.1f}M parameters, {'fp8 blocks, ' if fp8 else ''}bf16)")
    return n


def model_inputs(a, dev, with_outliers):
    """Latents [1,16,F,H,W] N(0,1) (a few outliers if asked) and text [1,512,4096] N(0,1).

    The text comes from its own generator, so block, forward and sampling share the same text; block and
    forward share the same latents."""
    g, gc = gens(a.seed, 10 if with_outliers else 11, dev)
    lat = randn(latent_shape(a), g, dev)
    if with_outliers:
        scale_entries(lat, 5e-4, 8.0, gc)
    gt, _ = gens(a.seed, 12, dev)
    ctx = randn([1, 512, 4096], gt, dev)
    return lat, ctx


LAT_OUTLIER_DOC = "N(0,1) with 0.05% of entries x8"
TEXT_DOC = ("text embeddings [1, 512, 4096] N(0,1), non-zero in every row (no zeroed padding rows, unlike a real "
            "padded UMT5 prompt)")


def forward(model, x, t, ctx, dtype):
    return model(x.to(dtype), t, ctx.to(dtype)).float()


def forward_case_inputs(a, dev):
    lat, ctx = model_inputs(a, dev, with_outliers=True)
    t = torch.tensor([500.0], device=dev)
    return lat, t, ctx


def forward_case_write(name, d, weights_rel, cfg, lat, t, ctx, ref, out, ops_ref, ops_bf, times, env, t0):
    m = metrics(out, ref)
    io = {"input.hidden_states": lat, "input.timestep": t, "input.encoder_hidden_states": ctx,
          "ref.sample": ref, "torch_bf16.sample": out}
    size = save_io(os.path.join(d, "io.safetensors"), io)
    n = cfg["num_layers"]
    tensors = [
        describe("input.hidden_states", f"latents [B, C, F, H, W]; {LAT_OUTLIER_DOC}", lat),
        describe("input.timestep", "timestep [B] = 500.0 (float32 in both runs)", t),
        describe("input.encoder_hidden_states", TEXT_DOC, ctx),
        describe("ref.sample", f"fp32 forward of the {n}-layer model on the bf16-rounded weights (TF32 off)", ref),
        describe("torch_bf16.sample", "forward of the model after .to(torch.bfloat16) (latents and text cast to "
                 "bf16, timestep float32, as the yardstick's --dtype bf16 does), output upcast", out),
    ]
    case = {
        "case": name,
        "description": f"Wan2.1-1.3B DiT (dim 1536, 12 heads, ffn 8960) with num_layers={n}: patch embedding, "
                       f"condition embedder, {n} block(s), head; latents {list(lat.shape)} "
                       f"({lat.shape[2] * (lat.shape[3] // 2) * (lat.shape[4] // 2)} tokens), text [1, 512, 4096], t=500",
        "weights": weights_rel,
        "weights_note": "Diffusers WanTransformer3DModel layout; stored as bf16; " + INIT_DOC,
        "config": diffusers_config(cfg),
        "rule": RULE, "metrics_definition": METRICS_DOC,
        "tensors": tensors,
        "outputs": {"sample": {"inputs": ["input.hidden_states", "input.timestep", "input.encoder_hidden_states"],
                               "ref": "ref.sample", "torch_bf16": "torch_bf16.sample"}},
        "torch_bf16_metrics": {"sample": m},
        "sdpa": {"note": FP32_SDPA_NOTE, "ref_ops": ops_ref, "torch_bf16_ops": ops_bf},
        "timing_s": times,
        "env": env, "io_bytes": size,
    }
    write_case(d, case)
    report(name, {"sample": short(m)}, {"sdpa_bf16": ops_bf, "timing_s": times}, t0)


def sampling_schedule():
    s = torch.linspace(1.0, 0.0, NUM_STEPS + 1, dtype=torch.float64)[:-1]
    sig = SHIFT * s / (1.0 + (SHIFT - 1.0) * s)
    sig = torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
    return sig.float(), (1000.0 * sig[:NUM_STEPS]).float()


def sample(model, x0, ctx, sigmas, timesteps, dtype):
    """Flow-matching Euler: x kept in float32, cast to dtype at the model input, v upcast for the update."""
    x = x0.clone()
    c = ctx.to(dtype)
    steps = []
    for i in range(NUM_STEPS):
        v = model(x.to(dtype), timesteps[i:i + 1], c).float()
        x = x + (sigmas[i + 1] - sigmas[i]) * v
        steps.append(x)
        del v
    return steps


def sampling_case_write(d, cfg, x0, ctx, sigmas, timesteps, ref_steps, bf_steps, times, env, t0):
    per_step = [metrics(b, r, psnr=True) for b, r in zip(bf_steps, ref_steps)]
    m = per_step[-1]
    io = {"input.hidden_states": x0, "input.encoder_hidden_states": ctx,
          "input.sigmas": sigmas, "input.timesteps": timesteps,
          "ref.latents": ref_steps[-1], "torch_bf16.latents": bf_steps[-1]}
    for i in range(NUM_STEPS - 1):
        io[f"ref.latents_step{i + 1}"] = ref_steps[i]
        io[f"torch_bf16.latents_step{i + 1}"] = bf_steps[i]
    size = save_io(os.path.join(d, "io.safetensors"), io)
    tensors = [
        describe("input.hidden_states", "x_0: the initial noise latents, N(0,1) (no outliers)", x0),
        describe("input.encoder_hidden_states", TEXT_DOC + "; the same text as the block/forward cases", ctx),
        describe("input.sigmas", f"sigma_0..sigma_{NUM_STEPS} (float32)", sigmas),
        describe("input.timesteps", f"t_0..t_{NUM_STEPS - 1} = 1000*sigma_i (float32), the model's timestep input", timesteps),
        describe("ref.latents", f"x_{NUM_STEPS}, fp32 run", ref_steps[-1]),
        describe("torch_bf16.latents", f"x_{NUM_STEPS}, bf16 model run", bf_steps[-1]),
    ]
    for i in range(NUM_STEPS - 1):
        tensors.append(describe(f"ref.latents_step{i + 1}", f"x_{i + 1} (after step {i + 1}), fp32 run", ref_steps[i]))
        tensors.append(describe(f"torch_bf16.latents_step{i + 1}", f"x_{i + 1}, bf16 model run", bf_steps[i]))
    case = {
        "case": "sampling",
        "description": f"{NUM_STEPS} steps of flow-matching Euler with the full 30-layer Wan2.1-1.3B model, one prompt, "
                       "no classifier-free guidance",
        "weights": "../forward/transformer",
        "weights_note": "the forward case's weights (Diffusers layout, bf16); " + INIT_DOC,
        "config": diffusers_config(cfg),
        "schedule": {
            "shift": SHIFT, "num_steps": NUM_STEPS,
            "sigmas": sigmas.tolist(), "timesteps": timesteps.tolist(),
            "formula": "s = linspace(1, 0, N+1)[:-1]; sigma = shift*s/(1 + (shift-1)*s) (float64, then float32); "
                       "sigma_N = 0; t_i = 1000*sigma_i",
            "update": "x_{i+1} = x_i + (sigmas[i+1] - sigmas[i]) * v(x_i, t_i), all in float32 (the sigma difference "
                      "taken in float32 from input.sigmas); x_0 = input.hidden_states",
            "bf16_run": "model after .to(torch.bfloat16); x kept in float32 between steps, cast to bf16 at the model "
                        "input (text cast to bf16 once), timestep float32, v upcast to float32 for the update "
                        "(as Diffusers pipelines do)",
            "fp32_run": "the same loop with the fp32 model on the bf16-rounded weights, TF32 off",
        },
        "rule": RULE, "metrics_definition": METRICS_DOC,
        "tensors": tensors,
        "outputs": {"latents": {"inputs": ["input.hidden_states", "input.encoder_hidden_states", "input.sigmas",
                                           "input.timesteps"],
                                "ref": "ref.latents", "torch_bf16": "torch_bf16.latents"}},
        "torch_bf16_metrics": {"latents": m},
        "torch_bf16_metrics_per_step": {f"step{i + 1}": pm for i, pm in enumerate(per_step)},
        "sdpa": {"note": FP32_SDPA_NOTE},
        "timing_s": times,
        "env": env, "io_bytes": size,
    }
    write_case(d, case)
    report("sampling", {"latents": short(m)},
           {"per_step_rel_l2": [pm["rel_l2"] for pm in per_step], "timing_s": times}, t0)


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, round(time.perf_counter() - t, 3)


def case_block(Y, a, dev, env):
    t0 = time.perf_counter()
    d = os.path.join(a.out, "block")
    os.makedirs(d, exist_ok=True)
    cfg = model_cfg(Y, 1)
    model = build_model(Y, cfg, a.seed, 20, dev)
    save_weights(model, cfg, os.path.join(d, "transformer"), quantize_fp8(model) if a.fp8 else None)
    lat, t, ctx = forward_case_inputs(a, dev)
    times = {}
    with torch.no_grad():
        with fp32_sdpa():
            (ref, ops_ref), times["fp32_forward"] = timed(lambda: traced(lambda: forward(model, lat, t, ctx, torch.float32)))
        log("block: fp32 reference done")
        model.to(torch.bfloat16)
        free()
        (out, ops_bf), times["bf16_forward"] = timed(lambda: traced(lambda: forward(model, lat, t, ctx, torch.bfloat16)))
        log("block: bf16 run done")
    del model
    free()
    forward_case_write("block", d, "transformer", cfg, lat, t, ctx, ref, out, ops_ref, ops_bf, times, env, t0)
    del lat, t, ctx, ref, out
    free()


def case_full(Y, a, dev, env, do_forward, do_sampling):
    """forward and sampling share one 30-layer model (weights written once, to forward/transformer)."""
    t0 = time.perf_counter()
    cfg = model_cfg(Y, Y.PRESETS["wan2.1-1.3b"]["num_layers"])
    fd = os.path.join(a.out, "forward")
    sd = os.path.join(a.out, "sampling")
    model = build_model(Y, cfg, a.seed, 30, dev)
    save_weights(model, cfg, os.path.join(fd, "transformer"), quantize_fp8(model) if a.fp8 else None)
    t_f, t_s = {}, {}
    with torch.no_grad():
        if do_forward:
            lat, t, ctx = forward_case_inputs(a, dev)
            with fp32_sdpa():
                (ref_f, ops_ref), t_f["fp32_forward"] = timed(
                    lambda: traced(lambda: forward(model, lat, t, ctx, torch.float32)))
            log(f"forward: fp32 reference done ({t_f['fp32_forward']} s)")
        if do_sampling:
            x0, ctx_s = model_inputs(a, dev, with_outliers=False)
            sigmas, timesteps = sampling_schedule()
            sigmas, timesteps = sigmas.to(dev), timesteps.to(dev)
            with fp32_sdpa():
                ref_steps, t_s["fp32_sampling"] = timed(
                    lambda: sample(model, x0, ctx_s, sigmas, timesteps, torch.float32))
            log(f"sampling: fp32 reference done ({t_s['fp32_sampling']} s)")
        model.to(torch.bfloat16)  # frees the fp32 parameters (bf16-rounded, so exact, unless --fp8)
        free()
        if do_forward:
            (out_f, ops_bf), t_f["bf16_forward"] = timed(
                lambda: traced(lambda: forward(model, lat, t, ctx, torch.bfloat16)))
            log(f"forward: bf16 run done ({t_f['bf16_forward']} s)")
        if do_sampling:
            bf_steps, t_s["bf16_sampling"] = timed(
                lambda: sample(model, x0, ctx_s, sigmas, timesteps, torch.bfloat16))
            log(f"sampling: bf16 run done ({t_s['bf16_sampling']} s)")
    del model
    free()
    if do_forward:
        os.makedirs(fd, exist_ok=True)
        forward_case_write("forward", fd, "transformer", cfg, lat, t, ctx, ref_f, out_f, ops_ref, ops_bf, t_f, env, t0)
        del lat, t, ctx, ref_f, out_f
        free()
    if do_sampling:
        os.makedirs(sd, exist_ok=True)
        sampling_case_write(sd, cfg, x0, ctx_s, sigmas, timesteps, ref_steps, bf_steps, t_s, env, t0)
        del x0, ctx_s, ref_steps, bf_steps
        free()


# ----------------------------------------------------------------------------- main

def find_yardstick(path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cands = [path] if os.path.isabs(path) else [path, os.path.join(root, path)]
    cands += [os.path.join(root, ".device/bench/torch_wan_ref.py"),
              os.path.join(root, "../shared/bench/torch_wan_ref.py"),
              os.path.join(root, "shared/bench/torch_wan_ref.py")]
    for c in cands:
        if os.path.isfile(c):
            return os.path.abspath(c)
    raise SystemExit(f"yardstick not found; tried {cands}")


def load_yardstick(path):
    sys.path.insert(0, os.path.dirname(path))
    return importlib.import_module(os.path.splitext(os.path.basename(path))[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--cases", default=",".join(ALL_CASES), help="comma list of " + ",".join(ALL_CASES))
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--yardstick", default=".device/bench/torch_wan_ref.py", help="path of torch_wan_ref.py")
    ap.add_argument("--fp8", action="store_true", help="model cases: block weights as ComfyUI fp8_scaled (see above)")
    a = ap.parse_args()
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in ALL_CASES]
    if bad or not cases:
        raise SystemExit(f"unknown case(s) {bad}; choose from {ALL_CASES}")
    if a.height % 16 or a.width % 16 or (a.frames - 1) % 4:
        raise SystemExit("--height and --width must be multiples of 16 and --frames 4k+1")
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    dev = "cuda"
    disable_tf32()
    os.makedirs(a.out, exist_ok=True)
    needs_model = any(c in cases for c in ("block", "forward", "sampling"))
    ypath = find_yardstick(a.yardstick) if needs_model else None
    Y = load_yardstick(ypath) if ypath else None
    env = environment(dev, ypath)
    env["fp32_check"] = verify_fp32(dev)
    if a.fp8:
        env["fp8_weights"] = FP8_DOC
    log(f"{env['device']}, torch {env['torch']}; cases {cases}; {tokens(a)} tokens; latents {latent_shape(a)}")
    log(f"precision flags {env['precision_flags']}")
    if "attention" in cases:
        torch.cuda.reset_peak_memory_stats()
        case_attention(a, dev, env)
        log(f"attention done; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if "gemm" in cases:
        torch.cuda.reset_peak_memory_stats()
        case_gemm(a, dev, env)
        log(f"gemm done; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if "block" in cases:
        torch.cuda.reset_peak_memory_stats()
        case_block(Y, a, dev, env)
        log(f"block done; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if "forward" in cases or "sampling" in cases:
        torch.cuda.reset_peak_memory_stats()
        case_full(Y, a, dev, env, "forward" in cases, "sampling" in cases)
        log(f"forward/sampling done; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    log("all done")


if __name__ == "__main__":
    main()
