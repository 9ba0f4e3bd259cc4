"""Plain-PyTorch umT5 encoder (UMT5EncoderModel's forward, no transformers), the yardstick for the
text encoder's bf16 error.

  python3 bench/torch/umt5_ref.py --check test/fixtures/umt5-encoder [--dtype fp32|bf16]

Loads the fixture's text_encoder/ (transformers layout: config.json + model.safetensors), runs its
io.safetensors inputs and prints one JSON line with rel_l2 and max_abs of last_hidden_state against
the fixture's float32 reference. fp32 must reproduce the fixture (exit 1 otherwise); bf16 runs the
weights and activations in bfloat16 as a user's torch_dtype=torch.bfloat16 does (norm statistics and
the softmax in float32, as transformers' T5LayerNorm and UMT5Attention compute them) and reports its
error, the figure backend 'cuda''s bf16 error is judged against.

The model, per layer l (d = d_model, H heads of d_kv):
  h ← h + o(softmax(q·kᵀ + bias_l(rel_pos) + mask) · v)   on rms_norm(h)   (no 1/√d_kv scaling)
  h ← h + wo(gelu_tanh(wi_0 x) ⊙ wi_1 x)                   on x = rms_norm(h)
then final rms_norm; bias_l: a [num_buckets, H] table indexed by T5's bidirectional log buckets of
key − query; rms_norm(x) = w · x · rsqrt(mean(x²) + eps).
"""
import argparse, json, math, os, sys

import torch
from safetensors.torch import load_file


def rel_bucket(rel, num_buckets, max_distance):
    # T5's bidirectional buckets: half for keys after the query; exact below num_buckets/4, log-spaced up to max_distance
    num_buckets //= 2
    out = (rel > 0).long() * num_buckets
    n = rel.abs()
    exact = num_buckets // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return out + torch.where(n < exact, n, large)


def rms_norm(x, w, eps):
    var = x.float().pow(2).mean(-1, keepdim=True)
    y = x.float() * torch.rsqrt(var + eps)
    return w * y.to(w.dtype)


def encode(W, cfg, ids, mask, dtype):
    # ids, mask: [B, L] → [B, L, d_model]
    B, L = ids.shape
    H, dk = cfg["num_heads"], cfg["d_kv"]
    eps = cfg["layer_norm_epsilon"]
    w = {k: v.to(dtype) for k, v in W.items()}
    h = w["shared.weight"][ids]
    pos = torch.arange(L)
    buckets = rel_bucket(pos[None, :] - pos[:, None], cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"])
    key_mask = (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    for l in range(cfg["num_layers"]):
        p = f"encoder.block.{l}.layer."
        x = rms_norm(h, w[p + "0.layer_norm.weight"], eps)
        q, k, v = (torch.nn.functional.linear(x, w[p + f"0.SelfAttention.{n}.weight"]).view(B, L, H, dk).transpose(1, 2) for n in "qkv")
        bias = w[p + "0.SelfAttention.relative_attention_bias.weight"][buckets].permute(2, 0, 1)[None]
        scores = q @ k.transpose(-1, -2) + bias + key_mask
        attn = torch.softmax(scores.float(), dim=-1).to(dtype)
        o = (attn @ v).transpose(1, 2).reshape(B, L, H * dk)
        h = h + torch.nn.functional.linear(o, w[p + "0.SelfAttention.o.weight"])
        x = rms_norm(h, w[p + "1.layer_norm.weight"], eps)
        g = torch.nn.functional.gelu(torch.nn.functional.linear(x, w[p + "1.DenseReluDense.wi_0.weight"]), approximate="tanh")
        u = torch.nn.functional.linear(x, w[p + "1.DenseReluDense.wi_1.weight"])
        h = h + torch.nn.functional.linear(g * u, w[p + "1.DenseReluDense.wo.weight"])
    return rms_norm(h, w["encoder.final_layer_norm.weight"], eps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", required=True, help="an umt5-encoder fixture folder (case.json, io.safetensors, text_encoder/)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.check, "text_encoder", "config.json")))
    W = load_file(os.path.join(a.check, "text_encoder", "model.safetensors"))
    io = load_file(os.path.join(a.check, "io.safetensors"))
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        got = encode(W, cfg, io["input.input_ids"], io["input.attention_mask"], dtype).float()
    want = io["output.last_hidden_state"]
    rel = ((got - want).norm() / want.norm()).item()
    max_abs = (got - want).abs().max().item()
    print(json.dumps({"case": os.path.basename(os.path.normpath(a.check)), "dtype": a.dtype, "rel_l2": rel, "max_abs": max_abs,
                      "ref_max_abs": want.abs().max().item(), "torch": torch.__version__}))
    if a.dtype == "fp32" and max_abs > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
