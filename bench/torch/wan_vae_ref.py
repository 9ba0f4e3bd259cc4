"""PyTorch timing reference for the Wan2.1 VAE decode.

A plain-PyTorch Wan2.1 VAE decoder (post_quant_conv + decoder; same math and parameter names as
Diffusers' AutoencoderKLWan, no diffusers import) used as the yardstick for wan-tfjs GPU VAE
benchmarks: run it on the same GPU, right beside the tfjs benchmark, and report the ratio.
Decoding goes one latent frame at a time with the causal cache (CACHE_T = 2), as Diffusers'
`_decode` does; the output is clamped to [-1, 1]. The latent de-normalisation
(z * latents_std + latents_mean) belongs to the pipeline, not to the VAE, and is not done here.

  python3 wan_vae_ref.py --dtype bf16 --frames 81 --height 480 --width 832      # timing, random weights
  python3 wan_vae_ref.py --weights DIR/vae --check DIR/io.safetensors            # numerical check

--weights loads a Diffusers-layout VAE folder (config.json + diffusion_pytorch_model*.safetensors;
only the decoder.* and post_quant_conv.* tensors are used). --check decodes the fixture's latents
(input.latent -> output.decoded_latent, output.latent_mean -> output.decoded_mean) in float32 with
TF32 off, prints one JSON line per output and exits 1 if any element misses atol + rtol*|expected|
(tolerance from the case.json beside io.safetensors). Timing prints one JSON line (median of
--iters after --warmup).
"""
import argparse, glob, json, os, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

CACHE_T = 2  # frames of past context a temporal-kernel-3 conv keeps between chunks

# Wan2.1 VAE (Diffusers' AutoencoderKLWan defaults)
WAN21 = dict(base_dim=96, decoder_base_dim=None, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
             attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0, is_residual=False,
             out_channels=3, patch_size=None)


class CausalConv3d(nn.Conv3d):
    """Conv3d, causal in time: the declared temporal padding pt goes to the front (2*pt frames).
    With a cache (dict module -> tensor) the front frames are the last CACHE_T input frames of the
    previous chunks, zero-padded only where fewer exist, so chunked = one causal conv over the clip."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.front, self.ph, self.pw = 2 * pt, ph, pw

    def forward(self, x, cache=None):
        front = self.front
        if cache is not None and front > 0:
            prev = cache.get(self)
            if prev is not None:
                x = torch.cat([prev, x], 2)
                front -= prev.shape[2]
            cache[self] = x[:, :, -CACHE_T:].clone()
        x = F.pad(x, (self.pw, self.pw, self.ph, self.ph, front, 0))
        return super().forward(x)


class RMSNorm(nn.Module):
    """x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma; gamma [C,1,1,1] (video) or [C,1,1] (images)."""

    def __init__(self, dim, images):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class Upsample2x(nn.Module):
    """Nearest-exact x2 in H and W, computed in float32 (as Diffusers' WanUpsample)."""

    def forward(self, x):
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").type_as(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.norm1 = RMSNorm(in_dim, images=False)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm(out_dim, images=False)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)  # dropout (0) omitted
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x, cache):
        h = self.conv_shortcut(x)
        x = self.conv1(F.silu(self.norm1(x)), cache)
        x = self.conv2(F.silu(self.norm2(x)), cache)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each frame; q|k|v = channel thirds."""

    def __init__(self, dim):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(y)).reshape(b * t, 1, c * 3, h * w).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)  # [b*t, 1, h*w, c] each
        y = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(c)
        y = self.proj(y.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w))
        return x + y.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)


class Resample(nn.Module):
    """Decoder upsampling: 'upsample3d' first runs time_conv (C -> 2C, kernel (3,1,1)) whose channel
    halves become frames 2t and 2t+1, except on the first chunk of a pass (Diffusers' "Rep" mark:
    no time conv, no doubling, and the time conv's zero-padded context starts at the second chunk);
    then, frame by frame, nearest x2 and Conv2d(C -> C/2, 3, pad 1) (the only step of 'upsample2d')."""

    def __init__(self, dim, mode):
        super().__init__()
        assert mode in ("upsample2d", "upsample3d"), mode
        self.mode = mode
        self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x, cache):
        b, c, t, h, w = x.shape
        if self.mode == "upsample3d":
            if self not in cache:
                cache[self] = "Rep"  # first chunk: frames pass through un-doubled
            else:
                x = self.time_conv(x, cache)
                x = torch.stack((x[:, :c], x[:, c:]), 3).reshape(b, c, t * 2, h, w)
        t = x.shape[2]
        x = self.resample(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return x.view(b, t, x.shape[1], x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)


class MidBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim), ResidualBlock(dim, dim)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x, cache):
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


class UpBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res_blocks, upsample_mode):
        super().__init__()
        self.resnets = nn.ModuleList(ResidualBlock(in_dim if i == 0 else out_dim, out_dim)
                                     for i in range(num_res_blocks + 1))
        if upsample_mode is not None:
            self.upsamplers = nn.ModuleList([Resample(out_dim, upsample_mode)])
        else:
            self.upsamplers = None

    def forward(self, x, cache):
        for r in self.resnets:
            x = r(x, cache)
        return self.upsamplers[0](x, cache) if self.upsamplers is not None else x


class Decoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_upsample, out_channels):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = nn.ModuleList()
        last = len(dim_mult) - 1
        for i in range(len(dim_mult)):
            in_dim = dims[i] // 2 if i > 0 else dims[i]  # the previous level's upsample halved the channels
            mode = None if i == last else ("upsample3d" if temperal_upsample[i] else "upsample2d")
            self.up_blocks.append(UpBlock(in_dim, dims[i + 1], num_res_blocks, mode))
        self.norm_out = RMSNorm(dims[-1], images=False)
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)

    def forward(self, x, cache):
        x = self.mid_block(self.conv_in(x, cache), cache)
        for b in self.up_blocks:
            x = b(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class WanVAEDecode(nn.Module):
    """The decode half of AutoencoderKLWan (Wan2.1 layout): state-dict keys post_quant_conv.*, decoder.*."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.get("is_residual") or (cfg.get("patch_size") or 1) > 1:
            raise SystemExit("only the Wan2.1 VAE layout (is_residual false, no patch_size) is implemented")
        z = cfg["z_dim"]
        self.post_quant_conv = CausalConv3d(z, z, 1)
        self.decoder = Decoder3d(cfg.get("decoder_base_dim") or cfg["base_dim"], z, list(cfg["dim_mult"]),
                                 cfg["num_res_blocks"], list(cfg["temperal_downsample"])[::-1],
                                 cfg.get("out_channels", 3))

    def forward(self, z):
        # z: [B, z_dim, F, h, w] (raw latents, already de-normalised) -> [B, 3, 1 + 4(F-1), 8h, 8w]
        x = self.post_quant_conv(z)
        cache = {}  # one causal cache for the whole clip
        outs = [self.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])]
        out = torch.cat(outs, 2)
        del outs, cache
        return out.clamp_(min=-1.0, max=1.0)


def load_weights(model, folder):
    from safetensors.torch import load_file
    state = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        state.update(load_file(f))
    state = {k: v for k, v in state.items() if k.startswith(("decoder.", "post_quant_conv."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing={missing[:5]} unexpected={unexpected[:5]}")


def check(model, path, dev, dtype=torch.float32):
    from safetensors.torch import load_file
    io = load_file(path)
    case_path = os.path.join(os.path.dirname(os.path.abspath(path)), "case.json")
    tol = json.load(open(case_path)).get("tolerance", {}) if os.path.exists(case_path) else {}
    atol, rtol = tol.get("atol", 2e-4), tol.get("rtol", 1e-3)
    pairs = [("input.latent", "output.decoded_latent"), ("output.latent_mean", "output.decoded_mean")]
    ok, ran = True, 0
    for src, dst in pairs:
        if src not in io or dst not in io:
            continue
        ran += 1
        with torch.no_grad():
            out = model(io[src].to(dev, dtype)).float().cpu()
        ref = io[dst].float()
        if out.shape != ref.shape:
            print(json.dumps({"check": dst, "input": src, "shape": list(out.shape), "expected_shape": list(ref.shape),
                              "pass": False}))
            ok = False
            continue
        diff = (out - ref).abs()
        bad = int((diff > atol + rtol * ref.abs()).sum())
        ok = ok and bad == 0
        rel_l2 = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
        print(json.dumps({"check": dst, "input": src, "dtype": str(dtype).replace("torch.", ""), "shape": list(out.shape),
                          "max_abs_err": diff.max().item(), "rel_l2": rel_l2, "ref_max_abs": ref.abs().max().item(),
                          "atol": atol, "rtol": rtol, "elements_over_tol": bad, "pass": bad == 0}))
    if ran == 0:
        raise SystemExit(f"{path}: no decode pair found ({pairs})")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", help="Diffusers-layout VAE folder (config.json + *.safetensors)")
    ap.add_argument("--check", help="io.safetensors fixture to compare against (float32, TF32 off)")
    ap.add_argument("--check-dtype", default="fp32", choices=["fp32", "bf16"],
                    help="with --check: bf16 runs the decoder in bfloat16 and reports its error (rel_l2) without failing")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32", "tf32"],
                    help="tf32 = fp32 weights with TF32 matmuls/convs allowed")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="one more decode under torch.profiler: GPU kernel time in all and the top kernels")
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype_name = a.check_dtype if a.check else a.dtype
    tf32 = dtype_name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    cfg = {**WAN21, **json.load(open(os.path.join(a.weights, "config.json")))} if a.weights else dict(WAN21)
    torch.manual_seed(0)
    with torch.device("cpu" if a.weights else "meta"):
        model = WanVAEDecode(cfg)
    if a.weights:
        load_weights(model, a.weights)
    else:
        model = model.to_empty(device=dev)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("gamma"):
                    nn.init.ones_(p)
                else:
                    nn.init.normal_(p, std=0.02)
    model = model.to(dev, dtype).eval()
    if a.check:
        ok = check(model, a.check, dev, dtype)
        sys.exit(0 if ok or dtype_name == "bf16" else 1)

    st = 2 ** len(cfg["temperal_downsample"])  # spatial factor 8
    tt = 2 ** sum(cfg["temperal_downsample"])  # temporal factor 4
    if (a.frames - 1) % tt or a.height % st or a.width % st:
        raise SystemExit(f"frames must be 1 + {tt}k and height/width multiples of {st}")
    lat = [1, cfg["z_dim"], (a.frames - 1) // tt + 1, a.height // st, a.width // st]
    z = torch.randn(lat, device=dev, dtype=dtype)
    cuda = dev == "cuda"
    times, out_shape = [], None
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            if i == a.warmup and cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(z)
            if cuda:
                torch.cuda.synchronize()
            if i >= a.warmup:
                times.append((time.perf_counter() - t0) * 1000)
            out_shape = list(out.shape)
            del out  # free the video before the next run, so the peak holds one output
    ms = sorted(times)[len(times) // 2]
    profile = kernel_profile(model, z) if a.profile and cuda else None
    print(json.dumps({
        "model": "wan2.1-vae-decode" if not a.weights else a.weights, "dtype": dtype_name, "latents": lat,
        "output": out_shape, "frame_by_frame": True, "median_ms": round(ms, 1), "min_ms": round(min(times), 1),
        "iters": a.iters, "warmup": a.warmup,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "tf32": tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        **(profile or {})}))


def kernel_profile(model, z):
    """GPU time of one decode by kernel name (ms), from torch.profiler's CUDA activity."""
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        out = model(z)
        torch.cuda.synchronize()
    del out
    by_name = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            by_name[e.name] = by_name.get(e.name, 0.0) + e.time_range.elapsed_us() / 1000
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:14]
    return {"profile_kernel_ms": round(sum(by_name.values()), 1),
            "profile_top": [[name[:90], round(ms, 1)] for name, ms in top]}


if __name__ == "__main__":
    main()
