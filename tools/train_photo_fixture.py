"""Train the "photo fixture": Wan 2.1's architecture at width 16, open branches, on clips of real photographs.

Why it exists: the bundled fixture (``vae_core/data/wan21_fixture.safetensors``,
``tools/train_fixture_vae.py``, width 12) was trained on generated shapes; it
reconstructs them at 33.6 dB but real footage blurrily, and its residual and
attention branches stayed nearly closed, so its trunk is close to a linear
codec and it is lenient on tile seams. This second fixture is wider (16), has
every residual branch and the attention *open* from the first step and trained
on real photographs, so tile seams and streaming approximations can be judged
on a network that behaves more like a released one.

Photos come from scikit-image's bundled sample images (``skimage.data``; only
the ones shipped inside the wheel, no download). Training clips are smooth
sub-pixel pans and zooms over the training photos (plus grey-scale ones,
tinted); the held-out clips are made the same way from *other* photos, never
seen in training (``HELD_OUT``). scikit-image is needed to train and to run
``benchmarks/photo_fixture.py``, not by the package or its tests::

    pip install scikit-image
    OMP_WAIT_POLICY=PASSIVE nice -n 10 python tools/train_photo_fixture.py \\
        --out vae_core/data/wan21_photo_fixture.safetensors

Starting point: ``train_fixture_vae.build`` (its hand-wired linear codec, about
as good on the held-out photo clips as the first fixture, 20.7 dB), then every branch
is opened the SkipInit way: the norm gains closing the branches are set to one
and instead each branch's *last* layer starts at zero, so the network is still
the codec at step 0 but every branch gets full gradients at once and is
trained at the full learning rate. Loss: MSE on pixels in [-1, 1] plus a tiny
latent-scale penalty (as the first fixture). Fully seeded: the same command on
the same torch build and thread count gives the same weights (defaults: 1900 steps,
48 minutes on 2 cores with torch 2.13 CPU).

Result (docs/photo_fixture.md): 21.3 dB on the held-out clips, 0.6 dB over the
first fixture, with the branches open; the 30 dB asked for was not reached.
The 4x8x8 compression into 16 channels is steep for photographs: the best
*linear* block code (16 principal components of 4x8x8x3 blocks) scores about
23 dB on such clips, and from random weights the net did not leave the mean
colour in this budget, nor did the codec move far from itself with larger
learning rates (Adam then wrecks the wiring within a few steps).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_fixture_vae.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fixture_vae import build, psnr, train_step  # noqa: E402  (also imports this checkout as `framestream`)

from framestream.vae_core.models.wan.layers import FrameAttention, ResidualBlock, RMSNorm  # noqa: E402
from framestream.vae_core.models.wan.model import WanConfig, WanVAE  # noqa: E402

# colour photos seen in training, grey-scale ones (tinted at random) seen in training, colour photos held out
TRAIN_COLOUR = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
TRAIN_GREY = ("camera", "moon", "grass", "gravel", "brick", "coins", "clock", "page", "text")
HELD_OUT = ("chelsea", "coffee", "stereo_motorcycle")  # stereo_motorcycle: its left view
ZOOM = (0.5, 2.0)  # source pixels per output pixel: 2x zoomed in (soft) to 2x zoomed out (dense detail)


def load_photo(name: str) -> torch.Tensor:
    """A ``skimage.data`` image as ``[3, H, W]`` float in [0, 1] (grey repeated to RGB, alpha dropped)."""
    import numpy as np
    import skimage.data

    image = getattr(skimage.data, name)()
    image = np.asarray(image[0] if isinstance(image, tuple) else image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return torch.from_numpy(image[..., :3].astype("float32") / 255.0).permute(2, 0, 1).contiguous()


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(1, generator=gen).item()


def photo_clip(photo: torch.Tensor, frames: int, size: int, gen: torch.Generator,
               zoom: tuple[float, float] = ZOOM, max_speed: float = 1.5) -> torch.Tensor:
    """A camera panning and zooming smoothly over ``photo`` ``[3, H, W]``: ``[T, size, size, 3]`` in [0, 1].

    The scale (source pixels per output pixel) starts anywhere in ``zoom`` and
    changes by at most 25 % over the clip, geometrically; the centre moves in
    a straight line at up to ``max_speed`` output pixels per frame (per 32 px
    of clip size). Sub-pixel positions are sampled bicubically, from a copy of
    the photo first shrunk with antialiasing when the whole clip zooms out.
    """
    start = _uniform(gen, *zoom)
    end = start * _uniform(gen, 0.8, 1.25)
    t = torch.linspace(0, 1, frames)
    scale = start * (end / start) ** t
    shrink = max(1.0, min(start, end))
    if shrink > 1.0:
        photo = F.interpolate(photo[None], scale_factor=1 / shrink, mode="bilinear", antialias=True,
                              align_corners=False)[0]
        scale = scale / shrink
    _, height, width = photo.shape
    speed = _uniform(gen, 0, max_speed) * size / 32 * scale.mean().item()  # source px per frame
    heading = _uniform(gen, 0, 2 * math.pi)
    dy, dx = speed * math.sin(heading) * (frames - 1), speed * math.cos(heading) * (frames - 1)
    half = size * scale.max().item() / 2
    lo_y, hi_y = half + abs(dy) / 2, height - half - abs(dy) / 2
    lo_x, hi_x = half + abs(dx) / 2, width - half - abs(dx) / 2
    cy = _uniform(gen, lo_y, hi_y) if hi_y > lo_y else height / 2  # else: reflected at the border
    cx = _uniform(gen, lo_x, hi_x) if hi_x > lo_x else width / 2
    offsets = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    ys = (cy + (t - 0.5) * dy).view(-1, 1, 1) + scale.view(-1, 1, 1) * offsets.view(1, -1, 1)
    xs = (cx + (t - 0.5) * dx).view(-1, 1, 1) + scale.view(-1, 1, 1) * offsets.view(1, 1, -1)
    grid = torch.stack(torch.broadcast_tensors(xs / width * 2 - 1, ys / height * 2 - 1), dim=-1)
    clip = F.grid_sample(photo[None].expand(frames, -1, -1, -1), grid, mode="bicubic", padding_mode="reflection",
                         align_corners=False)
    return clip.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def held_out_clips(frames: int = 17, size: int = 128, per_photo: int = 2, seed: int = 20_000,
                   zoom: tuple[float, float] = ZOOM) -> list[tuple[str, torch.Tensor]]:
    """The evaluation clips, ``(photo name, [T, S, S, 3])``, from photos never seen in training."""
    gen = torch.Generator().manual_seed(seed)
    return [(name, photo_clip(photo, frames, size, gen, zoom)) for name in HELD_OUT
            for photo in [load_photo(name)] for _ in range(per_photo)]


class Photos:
    """The training photos in memory, and seeded training batches ``[B, 3, T, H, W]`` in [-1, 1] from them."""

    def __init__(self) -> None:
        self.colour = [load_photo(name) for name in TRAIN_COLOUR]
        self.grey = [load_photo(name) for name in TRAIN_GREY]

    def clip(self, frames: int, size: int, gen: torch.Generator) -> torch.Tensor:
        if _uniform(gen, 0, 1) < 0.2:  # a grey photo, tinted: more textures, with colour of some kind
            photo = self.grey[int(_uniform(gen, 0, len(self.grey)))]
            tint = 0.4 + 0.6 * torch.rand(3, 1, 1, generator=gen)
            photo = photo * tint + (1 - tint) * _uniform(gen, 0, 1) * torch.rand(3, 1, 1, generator=gen)
        else:
            photo = self.colour[int(_uniform(gen, 0, len(self.colour)))]
            photo = photo[torch.randperm(3, generator=gen)] if _uniform(gen, 0, 1) < 0.3 else photo
        if _uniform(gen, 0, 1) < 0.5:
            photo = photo.flip(-1)
        return photo_clip(photo, frames, size, gen)

    def batch(self, gen: torch.Generator, pixels: int) -> torch.Tensor:
        frames = (5, 9, 17)[int(_uniform(gen, 0, 3))]
        size = 8 * int(_uniform(gen, 5, 11))  # 40-80 px
        count = max(1, round(pixels / (frames * size * size)))
        clips = [self.clip(frames, size, gen) for _ in range(count)]
        return torch.stack(clips).permute(0, 4, 1, 2, 3).mul(2).sub(1)


def open_branches(model: WanVAE, how: str) -> None:
    """``skip``: SkipInit, the branches' closing norm gains to one, their last layers to zero; ``gain``: as
    ``build`` leaves them (closing gains at zero, random last layers). Either way the output is unchanged."""
    if how == "gain":
        return
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ResidualBlock):
                module.residual[3].gamma.fill_(1.0)
                module.residual[6].weight.zero_()  # its bias is kept: codec_init may have put a constant there
            elif isinstance(module, FrameAttention):
                module.norm.gamma.fill_(1.0)
                module.proj.weight.zero_()
                module.proj.bias.zero_()


@torch.no_grad()
def branch_openness(model: WanVAE, x: torch.Tensor) -> list[tuple[str, float]]:
    """Per residual block and attention: the spread of the branch's output over the skip path's, on ``x``.

    A spread is the RMS after removing each channel's mean over the clip, so
    constant channels (the codec wiring carries one) count as no signal. A
    closed branch scores 0; an open one a fair fraction of 1 or more.
    """
    ratios, hooks = [], []

    def spread(t: torch.Tensor) -> float:
        return (t - t.mean(dim=tuple(range(2, t.dim())), keepdim=True)).pow(2).mean().sqrt().item()

    def residual_hook(name):
        def hook(module, inputs, output):
            x_in = inputs[0]
            branch = module.residual(x_in.clone())
            ratios.append((name, spread(branch) / max(spread(module.shortcut(x_in)), 1e-12)))
        return hook

    def attention_hook(name):
        def hook(module, inputs, output):
            x_in = inputs[0]
            ratios.append((name, spread(output - x_in) / max(spread(x_in), 1e-12)))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, ResidualBlock):
            hooks.append(module.register_forward_hook(residual_hook(name)))
        elif isinstance(module, FrameAttention):
            hooks.append(module.register_forward_hook(attention_hook(name)))
    try:
        model.decode_chunk(model.encode_chunk(x))
    finally:
        for hook in hooks:
            hook.remove()
    return ratios


def _rms_norm_for_autograd(self, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm's math without its in-place steps, which autograd refuses (used while training only)."""
    return x / x.square().sum(1, keepdim=True).sqrt().clamp_min(1e-12) * (self.gamma * self.scale)


def train(args) -> WanVAE:
    inference_forward, RMSNorm.forward = RMSNorm.forward, _rms_norm_for_autograd
    try:
        return _train(args)
    finally:
        RMSNorm.forward = inference_forward


def initial_model(dim: int, seed: int, init: str, open_how: str) -> WanVAE:
    """``codec``: ``train_fixture_vae.build`` (the wired linear codec); ``random``: its seeded random weights alone."""
    if init == "codec":
        model = build(dim, seed)
    else:
        torch.manual_seed(seed)
        model = WanVAE(WanConfig.wan21(dim))
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
                torch.nn.init.zeros_(module.bias)
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
    open_branches(model, open_how)
    return model


def _train(args) -> WanVAE:
    model = initial_model(args.dim, args.seed, args.init, args.open)
    print(f"WanVAE(WanConfig.wan21({args.dim})): {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params")
    photos = Photos()
    gen = torch.Generator().manual_seed(args.seed + 1)
    # Adam moves every weight by about lr per step, whatever its gradient: a weight reading the codec's large
    # constant channel is a bias with a big gain, so the wired trunk and the branches' last layers move slower
    last = lambda n: ".residual.6." in n or ".proj." in n  # noqa: E731
    branch = lambda n: ".residual." in n or ".to_qkv." in n or ".norm." in n  # noqa: E731
    kind = lambda n: 0 if last(n) else 1 if branch(n) else 2  # noqa: E731
    groups = [[p for n, p in model.named_parameters() if kind(n) == k] for k in range(3)]
    opt = torch.optim.Adam([{"params": groups[0], "lr": args.lr * args.last_lr}, {"params": groups[1], "lr": args.lr},
                            {"params": groups[2], "lr": args.lr * args.trunk_lr}])
    warmup = args.warmup
    schedule = lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    val_gen = torch.Generator().manual_seed(args.seed + 2)  # fixed clips of the *training* photos, to follow progress
    val = torch.stack([photos.clip(9, 64, val_gen) for _ in range(6)]).permute(0, 4, 1, 2, 3).mul(2).sub(1)
    started, recent = time.perf_counter(), []
    for step in range(args.steps):
        if step % args.val_every == 0 or step + 1 == args.steps:
            with torch.no_grad():
                print(f"step {step:5d}: validation (training photos) {psnr(val, model.decode_chunk(model.encode_chunk(val))):5.2f} dB",
                      flush=True)
        z_std = train_step(model, photos.batch(gen, args.pixels), opt, sched, args.latent_weight, recent)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}/{args.steps}  psnr {sum(recent) / len(recent):5.2f} dB  "
                  f"z std {z_std:.2f}  lr {sched.get_last_lr()[1]:.1e}  "
                  f"{time.perf_counter() - started:6.0f} s", flush=True)
            recent.clear()
    return model.eval()


def save(model: WanVAE, args, seconds: float) -> None:
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"framestream_fixture": f"wan2.1 dim {args.dim}, photos, open branches", "steps": str(args.steps),
            "seed": str(args.seed), "lr": str(args.lr), "trunk_lr": str(args.trunk_lr), "pixels": str(args.pixels),
            "threads": str(args.threads), "train_seconds": f"{seconds:.0f}", "torch": torch.__version__,
            "trainer": "tools/train_photo_fixture.py"}
    save_file(state, args.out, metadata=meta)


@torch.no_grad()
def evaluate(path: str) -> None:
    """Reload the fp16 file through the package's loader; held-out PSNR streamed (engine.encode -> engine.decode)."""
    from framestream.vae_core import load_vae
    from framestream.vae_core.quality import psnr as psnr01
    from framestream.vae_core.streaming import engine

    model = load_vae(path, torch.device("cpu"), torch.float32).eval()
    clips = held_out_clips()
    scores = []
    for name, clip in clips:
        decoded = engine.decode(model, engine.encode(model, clip))
        scores.append(psnr01(decoded, clip))
        print(f"held-out {name:18s} {tuple(clip.shape)}: {scores[-1]:5.2f} dB", flush=True)
    mse = sum(10 ** (-s / 10) for s in scores) / len(scores)
    print(f"held-out, all {len(scores)} clips: {-10 * math.log10(mse):.2f} dB (PSNR of the mean MSE)")
    x = torch.stack([clip for _, clip in clips[::2]]).permute(0, 4, 1, 2, 3).mul(2).sub(1)
    ratios = [r for _, r in branch_openness(model, x)]
    print(f"branch openness (branch RMS / skip spread): median {sorted(ratios)[len(ratios) // 2]:.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f} over {len(ratios)} branches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=16, help="base width (Wan 2.1 uses 96)")
    parser.add_argument("--steps", type=int, default=1900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1.5e-4, help="peak Adam lr of the branches (warmup, cosine to 5%%)")
    parser.add_argument("--trunk-lr", type=float, default=0.3, help="lr factor for the wired trunk and heads")
    parser.add_argument("--last-lr", type=float, default=0.5, help="lr factor for the branches' last layers")
    parser.add_argument("--pixels", type=int, default=2 * 9 * 48 * 48, help="pixels per batch (T*H*W summed)")
    parser.add_argument("--init", choices=("codec", "random"), default="codec", help="see initial_model")
    parser.add_argument("--open", choices=("skip", "gain"), default="skip", help="how branches start (open_branches)")
    parser.add_argument("--warmup", type=int, default=200, help="steps of linear lr warmup")
    parser.add_argument("--latent-weight", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="wan21_photo_fixture.safetensors")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.eval_only:
        started = time.perf_counter()
        model = train(args)
        seconds = time.perf_counter() - started
        save(model, args, seconds)
        print(f"trained in {seconds:.0f} s; wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
    evaluate(args.out)


if __name__ == "__main__":
    main()
