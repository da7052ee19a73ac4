"""Build the ComfyUI 0.33.0 SeedVR2 VAE (comfy/ldm/seedvr/vae.py) at a reduced width with random
weights, run decode and encode on a tiny input on CPU, print shapes and timing.

    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/build_small.py

The host hard-codes the widths: VideoAutoencoderKL.__init__ reads the module global
BYTEDANCE_BLOCK_OUT_CHANNELS = (128, 256, 512, 512), and VideoAutoencoderKLWrapper() takes no
width arguments. So build_small() patches that global for the duration of the constructor.
Other knobs of VideoAutoencoderKL.__init__ (layers_per_block, norm_num_groups) are reachable by
calling it on a Wrapper instance. Latent channels must stay 16 (Wrapper.decode checks it).
"""
import sys
import time

sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, "/work/hosts/comfy-0.33.0")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import torch  # noqa: E402

import comfy.ldm.seedvr.vae as V  # noqa: E402


def build_small(channels=(32, 64, 96, 96), layers_per_block=2, norm_num_groups=32, seed=0):
    """Host SeedVR2 VAE wrapper at reduced width, random weights, fp32, eval mode."""
    old = V.BYTEDANCE_BLOCK_OUT_CHANNELS
    V.BYTEDANCE_BLOCK_OUT_CHANNELS = tuple(channels)
    try:
        m = V.VideoAutoencoderKLWrapper.__new__(V.VideoAutoencoderKLWrapper)
        m.spatial_downsample_factor = 8
        m.temporal_downsample_factor = 4
        V.VideoAutoencoderKL.__init__(m, layers_per_block=layers_per_block, norm_num_groups=norm_num_groups)
        m.set_memory_limit(V.BYTEDANCE_VAE_CONV_MEM_GIB, V.BYTEDANCE_VAE_NORM_MEM_GIB)  # what Wrapper.__init__ does
    finally:
        V.BYTEDANCE_BLOCK_OUT_CHANNELS = old
    init_random(m, seed)
    return m.eval()


def init_random(m, seed=0):
    """comfy.ops layers skip reset_parameters (weights are torch.empty), so fill every tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def timed(fn, *a):
    fn(*a)                                                 # warm-up (oneDNN picks kernels on the first call)
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


if __name__ == "__main__":
    torch.manual_seed(0)
    channels = (32, 64, 96, 96)
    m = build_small(channels)
    n = sum(p.numel() for p in m.parameters())
    print(f"built VideoAutoencoderKLWrapper: block_out_channels={channels} params={n/1e6:.3f}M "
          f"keys={len(m.state_dict())} torch threads={torch.get_num_threads()}")
    print("GroupNorm norm limit (GiB):", V.get_norm_limit(), " conv memory_limit (GiB):", m.decoder.conv_in.memory_limit,
          " slicing_sample_min_size:", m.slicing_sample_min_size, " slicing_latent_min_size:", m.slicing_latent_min_size)
    with torch.no_grad():
        for T in (1, 2, 3, 5):
            z = torch.randn(1, 16, T, 4, 6)               # (B, 16, T, H/8, W/8), scaled like a ComfyUI latent
            x, dt = timed(m.decode, z)                     # Wrapper.decode: z / 0.9152 + 0, slicing_decode, even crop
            print(f"decode z{tuple(z.shape)} -> x{tuple(x.shape)}  {dt:.2f}s  |x|max={x.abs().max():.3f}")
        for F in (1, 5, 8, 9, 13):
            px = torch.rand(1, 3, F, 32, 48) * 2 - 1       # (B, 3, F, H, W) in [-1, 1]
            lat, dt = timed(lambda p: m.comfy_format_encoded(m.encode(p)), px)  # + what comfy.sd.VAE.encode applies
            print(f"encode x{tuple(px.shape)} -> z{tuple(lat.shape)}  {dt:.2f}s")
