"""Train the small "fixture" VAE: Wan 2.1's exact architecture at reduced width, on generated clips.

Why it exists: the real Wan VAEs are hundreds of MB, and a randomly initialised
one decodes noise, so with random weights nobody can judge whether a tiled or
streamed decode *looks* right (seams, flicker, edge artefacts). This fixture is
the same network (same layers, same key layout, same 4x8x8 compression, 16
latent channels) at width ``--dim`` instead of 96, fitted in a few CPU minutes
to reconstruct moving shapes. It is small enough (~4 MB in fp16) to ship in the
repository, loads through the ordinary checkpoint path, and gives real images
for tiling-quality checks and the demo.

From random weights this network needs thousands of steps to get past the mean
colour, so it starts instead from a hand-wired linear codec (``codec_init``:
latent = block means of each 4-frame group, decoder = bilinear upsampling) with
every residual branch and attention closed, and is then fine-tuned as a
deterministic autoencoder (encoder mean -> decoder): MSE on pixels in [-1, 1]
plus a tiny penalty keeping the latents near unit scale, like a real VAE's raw
latents. Fully seeded: the same command on the same torch build and thread
count gives the same weights.

    python tools/train_fixture_vae.py --out vae_core/data/wan21_fixture.safetensors
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time

# the machine may be shared: without this, OpenMP threads spin-wait at barriers and a
# second busy process slows training 5-15x; passive waiting costs little when alone
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "framestream" not in sys.modules:  # import this checkout as the package, whatever its folder is called
    _spec = importlib.util.spec_from_file_location("framestream", os.path.join(ROOT, "__init__.py"),
                                                   submodule_search_locations=[ROOT])
    sys.modules["framestream"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["framestream"])

from framestream.vae_core.demo import moving_shapes  # noqa: E402
from framestream.vae_core.models.wan.model import WanConfig, WanVAE  # noqa: E402

PIXELS_PER_STEP = 2 * 5 * 48 * 48  # batch size adapts so every step costs about the same


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(1, generator=gen).item()


def shapes_clip(frames: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """A richer cousin of ``moving_shapes``: ``[T, H, W, 3]`` in [0, 1].

    A gradient or smooth-noise background (sometimes panning), then 2-7 discs,
    ellipses or rectangles with soft or crisp edges, some striped, drifting at
    varied speeds. Lengths are in pixels, so the content scale varies with size.
    """
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width) + 0.5
    t = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1)
    size = max(height, width)

    # background: two-colour linear gradient (random direction), maybe panning, maybe smooth noise on top
    c0, c1 = _rand(gen, 3), _rand(gen, 3)
    angle = _uniform(gen, 0, 2 * math.pi)
    pan = _uniform(gen, -1.0, 1.0) if _uniform(gen, 0, 1) < 0.3 else 0.0
    ramp = ((xs * math.cos(angle) + ys * math.sin(angle) + pan * t) / size).clamp(-1, 2)
    ramp = ramp.expand(frames, height, width).unsqueeze(-1)
    clip = c0 + (c1 - c0) * (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    if _uniform(gen, 0, 1) < 0.4:
        cells = int(_uniform(gen, 2, 6))
        noise = F.interpolate(_rand(gen, 1, 3, cells, cells), size=(height, width), mode="bicubic", align_corners=False)
        clip = clip + _uniform(gen, 0.1, 0.4) * (noise[0].permute(1, 2, 0) - 0.5)

    for _ in range(int(_uniform(gen, 2, 8))):
        cy, cx = _uniform(gen, -0.1, 1.1) * height, _uniform(gen, -0.1, 1.1) * width
        speed = _uniform(gen, 0, 1) ** 2 * 4.0  # px per frame, mostly slow
        heading = _uniform(gen, 0, 2 * math.pi)
        py = cy + speed * math.sin(heading) * t
        px = cx + speed * math.cos(heading) * t + _uniform(gen, 0, 2) * torch.sin(t * _uniform(gen, 0.1, 0.6))
        ry, rx = _uniform(gen, 0.04, 0.25) * size, _uniform(gen, 0.04, 0.25) * size
        kind = int(_uniform(gen, 0, 3))
        if kind == 0:  # disc
            rx = ry
        dy, dx = ys - py, xs - px
        if kind == 2:  # axis-aligned rectangle, signed distance approx
            dist = torch.maximum(dy.abs() - ry, dx.abs() - rx)
        else:  # disc or ellipse, distance scaled to pixels
            dist = ((dy / ry) ** 2 + (dx / rx) ** 2).sqrt().sub(1) * min(rx, ry)
        softness = _uniform(gen, 0.3, 2.5)
        mask = torch.sigmoid(-dist / softness).unsqueeze(-1)
        color = _rand(gen, 3).expand(frames, height, width, 3)
        if _uniform(gen, 0, 1) < 0.25:  # stripes moving with the shape
            period, theta = _uniform(gen, 6, 20), _uniform(gen, 0, math.pi)
            phase = (dx * math.cos(theta) + dy * math.sin(theta)) * (2 * math.pi / period)
            color = color * (1 - _uniform(gen, 0.2, 0.6) * (0.5 + 0.5 * torch.sin(phase))).unsqueeze(-1)
        clip = clip * (1 - mask) + color * mask
    return clip.clamp(0, 1)


def training_batch(gen: torch.Generator) -> torch.Tensor:
    """A batch ``[B, 3, T, H, W]`` in [-1, 1]: 5 or 9 frames, 32-64 px crops (multiples of 8).

    Half the clips are crops of frames generated at 96-256 px, so the large, smooth
    frames of the demo and the tiling tests are in the distribution too.
    """
    frames = 5 if _uniform(gen, 0, 1) < 0.5 else 9
    height, width = 8 * int(_uniform(gen, 4, 9)), 8 * int(_uniform(gen, 4, 9))
    batch = max(1, round(PIXELS_PER_STEP / (frames * height * width)))
    clips = []
    for _ in range(batch):
        full = 8 * int(_uniform(gen, 12, 33)) if _uniform(gen, 0, 1) < 0.5 else max(height, width)
        if _uniform(gen, 0, 1) < 0.25:  # the demo's own generator, so the demo clip is in-distribution
            clip = moving_shapes(frames, full, full, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        else:
            clip = shapes_clip(frames, full, full, gen)
        y, x = int(_uniform(gen, 0, full - height + 1)), int(_uniform(gen, 0, full - width + 1))
        clips.append(clip[:, y : y + height, x : x + width])
    return torch.stack(clips).permute(0, 4, 1, 2, 3).mul(2).sub(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two videos in [-1, 1], measured on [0, 1] after clamping."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def _wire(conv: torch.nn.Module, entries: list) -> None:
    """Zero ``conv``; then for each (out, in, tap, gain) add ``gain`` to that weight."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for o, i, tap, gain in entries:
            conv.weight[(o, i, *tap)] += gain


def codec_init(model: WanVAE, latent_scale: float = 3.5) -> None:
    """Wires the trunk as a linear codec: latent = 8x8 block means of each 4-frame group.

    The decoder upsamples them bilinearly; this alone reconstructs the held-out
    clips at about 26-27 dB at 64 px and 31-37 dB at 192 px. Slot ``6f + 3n + c``
    of the trunk holds colour ``c`` of frame ``f`` of a group, negated when
    ``n = 1``: the RMSNorm-SiLU heads are made linear by a large constant channel
    (the norm becomes a fixed scale) and by reading ``silu(y) - silu(-y) = y``.
    Needs the residual branches and attention closed (see ``build``).
    """
    enc, dec, d = model.encoder, model.decoder, model.cfg.dim
    assert model.cfg.version == "2.1" and model.cfg.num_res_blocks == 2 and d >= 8
    now, one = (2, 1, 1), (0, 0, 0)  # a causal 3x3x3 conv's current-frame centre tap; a 1x1x1 conv's tap
    avg = [(0, 0), (0, 1), (1, 0), (1, 1)]  # the stride-2 conv's taps over a 2x2 block
    sign = lambda n: 1.0 - 2 * n  # noqa: E731
    # encoder: copy +-RGB, average 2x2 blocks at each level, temporal downsamplers stack frames into slots
    _wire(enc.conv1, [(3 * n + c, c, now, sign(n)) for n in (0, 1) for c in range(3)])
    for stage, slots in ((2, 6), (5, 6), (8, 12)):
        _wire(enc.downsamples[stage].resample[1], [(k, k, t, 0.25) for k in range(slots) for t in avg])
    for stage, slots in ((5, 6), (8, 12)):  # windows (x[2j], x[2j+1], x[2j+2]) -> x[2j+1] then x[2j+2]
        _wire(enc.downsamples[stage].time_conv, [(k + slots * j, k, (1 + j, 0, 0), 1.0) for k in range(slots) for j in (0, 1)])
    for stage, slots in ((3, 6), (6, 12)):
        _wire(enc.downsamples[stage].shortcut, [(k, k, one, 1.0) for k in range(slots)])
    constant = 10 * math.sqrt(24)  # dwarfs the 24 signal slots
    with torch.no_grad():
        enc.middle[2].residual[6].bias[4 * d - 1] = constant
    gain = latent_scale * constant / math.sqrt(4 * d)
    _wire(enc.head[2], [(3 * f + c, 6 * f + 3 * n + c, now, gain * sign(n)) for f in range(4) for n in (0, 1) for c in range(3)])
    rotation = torch.linalg.qr(torch.randn(16, 16))[0]  # spreads the 12 slots over all 16 latent channels
    _wire(model.conv1, [(i, j, one, rotation[i, j].item()) for i in range(16) for j in range(16)])
    _wire(model.conv2, [(j, i, one, rotation[i, j].item() / latent_scale) for i in range(16) for j in range(16)])
    # decoder: the same slots plus a constant one (last channel); temporal upsamplers emit slots as frames,
    # spatial ones interpolate bilinearly (nearest x2, then a [1 2 1] blur). At the borders the blur's zero
    # padding scales every channel alike, which the head's RMSNorm divides out again.
    blur = [((y, x), (1 + (y == 1)) * (1 + (x == 1)) / 16) for y in range(3) for x in range(3)]
    _wire(dec.conv1, [(6 * f + 3 * n + c, 3 * f + c, now, sign(n)) for f in range(4) for n in (0, 1) for c in range(3)])
    with torch.no_grad():
        dec.conv1.bias[4 * d - 1] = 1.0
    for stage, slots in ((3, 12), (7, 6)):  # output channels [0, 4d) are the first frame, [4d, 8d) the second
        last = 4 * d - 1
        _wire(dec.upsamples[stage].time_conv, [(k + 4 * d * j, k + slots * j, (2, 0, 0), 1.0) for k in range(slots)
                                               for j in (0, 1)] + [(last + 4 * d * j, last, (2, 0, 0), 1.0) for j in (0, 1)])
    constant = 10 * math.sqrt(6)
    for stage, slots, width, gain in ((3, 12, 2 * d, 1.0), (7, 6, 2 * d, 1.0), (11, 6, d, constant)):
        _wire(dec.upsamples[stage].resample[1], [(k, k, t, g) for k in range(slots) for t, g in blur]
              + [(width - 1, 2 * width - 1, t, g * gain) for t, g in blur])
    _wire(dec.upsamples[4].shortcut, [(k, k, one, 1.0) for k in range(12)] + [(4 * d - 1, 2 * d - 1, one, 1.0)])
    gain = constant / math.sqrt(d)
    _wire(dec.head[2], [(c, 3 * n + c, now, gain * sign(n)) for n in (0, 1) for c in range(3)])


def build(dim: int, seed: int) -> WanVAE:
    """Seeded model: variance-preserving random weights, zero biases, identity blocks, then the codec wiring."""
    torch.manual_seed(seed)
    model = WanVAE(WanConfig.wan21(dim))
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            torch.nn.init.zeros_(module.bias)
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
        elif name.endswith(("residual.3", "middle.1.norm")):
            torch.nn.init.zeros_(module.gamma)  # residual branches and attention start closed, at a norm
    codec_init(model)
    return model


def train(args) -> WanVAE:
    model = build(args.dim, args.seed)
    print(f"WanVAE(WanConfig.wan21({args.dim})): {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params")
    gen = torch.Generator().manual_seed(args.seed + 1)
    # Adam moves every weight by about lr per step, whatever its gradient: a gentle lr keeps that from
    # wrecking the wiring (a step on a weight reading a constant channel is a bias step), gentler on the trunk
    branch = lambda n: ".residual." in n or ".to_qkv." in n or ".proj." in n or n.endswith("1.norm.gamma")  # noqa: E731
    groups = [[p for n, p in model.named_parameters() if branch(n) == b] for b in (True, False)]
    opt = torch.optim.Adam([{"params": groups[0], "lr": args.lr}, {"params": groups[1], "lr": args.lr * args.trunk_lr}])
    warmup = max(1, args.steps // 20)
    schedule = lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    started, recent = time.perf_counter(), []
    for step in range(args.steps):
        z_std = train_step(model, training_batch(gen), opt, sched, args.latent_weight, recent)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}/{args.steps}  psnr {sum(recent) / len(recent):5.2f} dB  "
                  f"z std {z_std:.2f}  lr {sched.get_last_lr()[0]:.1e}  "
                  f"{time.perf_counter() - started:6.0f} s", flush=True)
            recent.clear()
    return model


def train_step(model: WanVAE, x: torch.Tensor, opt, sched, latent_weight: float, recent: list) -> float:
    """One step of the autoencoder loss (pixel MSE, plus a tiny pull of the latents towards unit scale, like a
    real VAE's raw latents); appends the batch's PSNR to ``recent`` and returns the latents' std."""
    z = model.encode_chunk(x)
    recon = F.mse_loss(model.decode_chunk(z), x)
    loss = recon + latent_weight * (z.pow(2).mean() - 1).pow(2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    recent.append(10 * math.log10(4 / recon.item()))
    return z.std().item()


def save(model: WanVAE, args) -> None:
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"framestream_fixture": f"wan2.1 dim {args.dim}", "steps": str(args.steps), "seed": str(args.seed),
            "lr": str(args.lr), "trunk_lr": str(args.trunk_lr), "trainer": "tools/train_fixture_vae.py"}
    save_file(state, args.out, metadata=meta)


@torch.no_grad()
def evaluate(path: str, dim: int) -> None:
    """Reload the fp16 file into a fresh fp32 model (strict) and report PSNR on held-out clips."""
    from safetensors.torch import load_file

    model = WanVAE(WanConfig.wan21(dim)).eval()
    model.load_state_dict({k: v.float() for k, v in load_file(path).items()}, strict=True)
    for size in (64, 192):
        gen = torch.Generator().manual_seed(10_000 + size)
        demo = [moving_shapes(17, size, size, seed=10_000 + i) for i in range(3)]
        rich = [shapes_clip(17, size, size, gen) for _ in range(3)]
        for name, clips in (("demo moving_shapes", demo), ("richer shapes", rich)):
            x = torch.stack(clips).permute(0, 4, 1, 2, 3).mul(2).sub(1)
            z = model.encode_chunk(x)
            y = model.decode_chunk(z)
            print(f"eval {size}x{size}x17 {name:18s}: psnr {psnr(x, y):5.2f} dB, "
                  f"latent {tuple(z.shape[1:])} std {z.std().item():.2f} mean {z.mean().item():+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=12, help="base width (Wan 2.1 uses 96)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4, help="peak Adam lr (warmup, then cosine to 5%%)")
    parser.add_argument("--trunk-lr", type=float, default=0.1, help="lr factor for the wired trunk and heads")
    parser.add_argument("--latent-weight", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="wan21_fixture.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = train(args)
    save(model, args)
    print(f"trained in {time.perf_counter() - started:.0f} s; wrote {args.out}")
    evaluate(args.out, args.dim)


if __name__ == "__main__":
    main()
