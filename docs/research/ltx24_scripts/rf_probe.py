"""Temporal receptive field / windowed-decode exactness probe on the host decoder
(NADiffusionDecoder) with the production temporal structure (depths 4,6,4,2,8;
temporal kernels 3,3,3,3,11; strides) but tiny channels and 1x1 latent pixels.

    /work/hosts/venv33/bin/python /tmp/ltx24/rf_probe.py
"""
import sys

sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, "/work/hosts/comfy-0.33.0")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import torch  # noqa: E402

import comfy.ldm.lightricks.vae.na_diffusion_decoder as hm  # noqa: E402

torch.manual_seed(0)
dec = hm.NADiffusionDecoder(
    in_channels=128, out_channels=3, patch_size=4, head_dim=16,
    stage_channels=(128, 64, 32, 32, 16), stage_depths=(4, 6, 4, 2, 8),
    stage_kernels=((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5), (11, 11, 11)),
    upsamples=(((1, 2, 2), 2), ((2, 1, 1), 2), ((2, 2, 2), 1), ((2, 2, 2), 2)),
    stage5_kernel=(11, 11, 11), t_emb_dim=32,
).eval()
with torch.no_grad():
    for n, p in dec.named_parameters():
        if "norm" in n and p.ndim == 1:
            p.copy_(1 + 0.2 * torch.randn_like(p))
        elif p.ndim == 1:
            p.copy_(0.1 * torch.randn_like(p))
        elif "scale_shift_table" in n:
            p.copy_(0.2 * torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)

T, H, W = 48, 1, 1
z = torch.randn(1, 128, T, H, W)
F = 8 * T - 7
noise = torch.randn(1, 3, F, 32 * H, 32 * W, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def decode(zz, x_t, drop=True, pad=True):
    ctx = dec.forward_pre_diffusion(zz, drop_leading_frame=drop, pad_trailing=pad)
    t = dec.default_inference_timesteps[:1].expand(zz.shape[0])
    return ctx, dec.forward_diff_step(ctx, x_t, t)


ctx_full, out_full = decode(z, noise)
print("full:", tuple(z.shape), "-> context", tuple(ctx_full.shape), "out", tuple(out_full.shape))


def frames_changed(a, b, dim, tol=1e-4):
    d = (a - b).abs().amax(dim=[i for i in range(a.ndim) if i != dim])
    idx = (d > tol).nonzero().flatten()
    return (idx.min().item(), idx.max().item()) if len(idx) else None


# ---------- 1. receptive field: perturb one latent frame
for k in (24, 0, T - 1):
    z2 = z.clone()
    z2[:, :, k] += 1.0
    ctx2, out2 = decode(z2, noise)
    cen = max(0, 8 * k - 7)
    for tol in (0.0, 1e-6, 1e-4, 1e-2):
        rc = frames_changed(ctx_full, ctx2, 1, tol)
        ro = frames_changed(out_full, out2, 2, tol)
        print(f"perturb latent frame {k} (pixel frames {cen}..{8*k}) tol={tol:g}: context frames changed {rc} "
              f"[{rc[0]-cen:+d},{rc[1]-8*k:+d}], output frames changed {ro} [{ro[0]-cen:+d},{ro[1]-8*k:+d}]")

# noise perturbation: stage 5 only
n2 = noise.clone()
n2[:, :, 190] += 1.0
_, out2 = decode(z, n2)
for tol in (0.0, 1e-6, 1e-4):
    print(f"perturb noise pixel frame 190 tol={tol:g}: output frames changed", frames_changed(out_full, out2, 2, tol))


# ---------- 2. windowed decode (whole decoder per window) with a latent halo
def window_decode(a, b, halo):
    """Decode latent frames [a, b) using latent frames [a-halo, b+halo) clipped; return pixel frames of [a, b)."""
    a0, b0 = max(0, a - halo), min(T, b + halo)
    origin, trailing = a0 == 0, b0 == T
    p0 = 0 if origin else 8 * a0 - 7          # first pixel frame the window's context covers
    p1 = 8 * b0 - 7                            # one past the last
    _, out = decode(z[:, :, a0:b0], noise[:, :, p0:p1], drop=origin, pad=trailing)
    assert out.shape[2] == p1 - p0, (out.shape, p0, p1)
    k0 = 0 if a == 0 else 8 * a - 7
    k1 = 8 * b - 7
    return out[:, :, k0 - p0:k1 - p0], (k0, k1)


print("\nwindowed decode of latent frames [20,28) (pixel frames 153..216) vs full clip:")
for halo in (0, 2, 4, 8, 12, 14, 16, 17, 18, 19, 20):
    o, (k0, k1) = window_decode(20, 28, halo)
    print(f"  halo={halo:2d} latent frames: max|diff|={(o - out_full[:, :, k0:k1]).abs().max().item():.3g}")
print("first window [0,8) (origin handled by drop_leading_frame):")
for halo in (0, 8, 16, 18, 20):
    o, (k0, k1) = window_decode(0, 8, halo)
    print(f"  halo={halo:2d}: max|diff|={(o - out_full[:, :, k0:k1]).abs().max().item():.3g}")
print("last window [40,48) (trailing pad applied only when the window reaches the end):")
for halo in (0, 8, 16, 18, 20):
    o, (k0, k1) = window_decode(40, 48, halo)
    print(f"  halo={halo:2d}: max|diff|={(o - out_full[:, :, k0:k1]).abs().max().item():.3g}")


# ---------- 3. stages 1-4 on the whole clip, stage 5 windowed over pixel frames
@torch.no_grad()
def stage5_window(p0, p1, halo_px):
    a0, b0 = max(0, p0 - halo_px), min(F, p1 + halo_px)
    t = dec.default_inference_timesteps[:1].expand(1)
    o = dec.forward_diff_step(ctx_full[:, a0:b0].contiguous(), noise[:, :, a0:b0], t)
    return o[:, :, p0 - a0:p1 - a0]


print("\nstage 5 windowed on pixel frames [160,200) with full-clip context:")
for halo in (0, 10, 20, 30, 35, 39, 40, 41, 45):
    o = stage5_window(160, 200, halo)
    print(f"  halo={halo:2d} pixel frames: max|diff|={(o - out_full[:, :, 160:200]).abs().max().item():.3g}")
