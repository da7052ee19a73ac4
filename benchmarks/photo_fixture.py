"""The photo fixture (Wan 2.1 layers, width 16, trained on photographs) against the first fixture (width 12, shapes).

Clips are pans and zooms over scikit-image's bundled photos that neither
fixture saw in training (``tools/train_photo_fixture.py``: ``HELD_OUT``), so
scikit-image must be installed (``pip install scikit-image``). CPU, fp32,
2 threads. Usage::

    python benchmarks/photo_fixture.py                # every part, a markdown table each
    python benchmarks/photo_fixture.py quality        # held-out PSNR, streamed encode -> decode
    python benchmarks/photo_fixture.py seams          # tiled vs untiled decode at two overlaps
    python benchmarks/photo_fixture.py openness       # residual / attention branch output vs skip path
    python benchmarks/photo_fixture.py groupnorm      # HunyuanVideo's GroupNorm approximations on photo clips
"""

from __future__ import annotations

import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tools")]
from decode_vs_diffusers import import_framestream  # noqa: E402

fs = import_framestream()
from train_photo_fixture import ZOOM, branch_openness, held_out_clips  # noqa: E402
from framestream.vae_core import load_vae  # noqa: E402
from framestream.vae_core.demo import FIXTURE_PATH  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core.streaming.tiles import DEFAULT_OVERLAP_PX, layout  # noqa: E402

PHOTO_FIXTURE_PATH = os.path.join(os.path.dirname(FIXTURE_PATH), "wan21_photo_fixture.safetensors")
FIXTURES = (("first fixture (width 12, shapes)", FIXTURE_PATH), ("photo fixture (width 16, photos)", PHOTO_FIXTURE_PATH))
ZOOMS = (("2x zoomed in (0.45-0.55 src px / px)", (0.45, 0.55)), ("native (0.9-1.1)", (0.9, 1.1)),
         ("2x zoomed out (1.8-2.2)", (1.8, 2.2)), (f"training range ({ZOOM[0]}-{ZOOM[1]})", ZOOM))


def _load(path: str):
    return load_vae(path, torch.device("cpu"), torch.float32).eval()


def _pooled(scores: list[float]) -> float:
    """PSNR of the mean squared error over clips (not the mean of PSNRs)."""
    return -10 * math.log10(sum(10 ** (-s / 10) for s in scores) / len(scores))


def quality() -> None:
    print("Held-out photo clips (chelsea, coffee, stereo_motorcycle; 2 clips each), 17x128x128, "
          "engine.encode -> engine.decode (streamed, untiled), PSNR of the pooled MSE:\n")
    models = [(name, _load(path)) for name, path in FIXTURES]
    print("| clips | " + " | ".join(name for name, _ in models) + " |")
    print("|---|" + "---:|" * len(models))
    for label, zoom in ZOOMS:
        clips = held_out_clips(zoom=zoom)
        cells = []
        for _, vae in models:
            scores = [psnr(engine.decode(vae, engine.encode(vae, clip)), clip) for _, clip in clips]
            cells.append(f"{_pooled(scores):.2f} dB (per photo {' / '.join(f'{s:.1f}' for s in scores)})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def seam_lines(size: int, tile_px: int, overlap_px: int, ratio: int) -> set[int]:
    """Where two tiles' owned parts meet (the middle of each overlap), in pixels."""
    tiles = layout(size // ratio, size // ratio, tile_px // ratio, -(-overlap_px // ratio))
    edges = {edge for w in tiles.windows for edge in (w.owned[0], w.owned[0] + w.owned[2])}
    return {edge * ratio for edge in edges if 0 < edge < size // ratio}


def band_mask(size: int, lines: set[int], band: int = 8) -> torch.Tensor:
    """Pixels within ``band`` of any of the vertical or horizontal ``lines``."""
    near = torch.zeros(size, dtype=torch.bool)
    for line in lines:
        near[max(0, line - band) : line + band] = True
    return near[:, None] | near[None, :]


def seams(size: int = 256, frames: int = 9) -> None:
    clips = held_out_clips(frames=frames, size=size, per_photo=1, zoom=(0.6, 1.1))
    print(f"Tiled vs untiled decode of the same latent (engine.encode of each held-out clip), 3 clips {frames}x{size}², "
          "a 2x2 grid; seam bands: pixels within 8 px of where neighbouring tiles hand over. PSNR of the pooled MSE; "
          "max abs diff over all clips:\n")
    print("| model | tiles | PSNR tiled vs untiled, dB | seam bands, dB | max abs diff | reconstruction, dB |")
    print("|---|---|---:|---:|---:|---:|")
    for name, path in FIXTURES:
        vae = _load(path)
        latents = [engine.encode(vae, clip) for _, clip in clips]
        wholes = [engine.decode(vae, z) for z in latents]
        recon = _pooled([psnr(w, c) for w, (_, c) in zip(wholes, clips)])
        for overlap in (DEFAULT_OVERLAP_PX, 32):
            tile = (size + overlap) // 2
            mask = band_mask(size, seam_lines(size, tile, overlap, vae.spatial_ratio))
            full, band, worst = [], [], 0.0
            for z, whole in zip(latents, wholes):
                tiled = engine.decode(vae, z, tile=tile, overlap=overlap)
                full.append(psnr(tiled, whole))
                band.append(psnr(tiled[:, mask], whole[:, mask]))
                worst = max(worst, (tiled - whole).abs().max().item())
            print(f"| {name} | 2x2 of {tile} px, overlap {overlap} | {_pooled(full):.1f} | {_pooled(band):.1f} | "
                  f"{worst:.4f} | {recon:.2f} |", flush=True)


def openness() -> None:
    clips = held_out_clips(frames=9, size=64, per_photo=1)
    x = torch.stack([clip for _, clip in clips]).permute(0, 4, 1, 2, 3).mul(2).sub(1)
    print("Branch openness on 3 held-out clips 9x64²: spread (RMS after removing each channel's clip mean) of each "
          "residual branch's output over its skip path's; attention: its added output over its input:\n")
    print("| model | median | min | max | branches > 0.1 |")
    print("|---|---:|---:|---:|---:|")
    for name, path in FIXTURES:
        ratios = sorted(r for _, r in branch_openness(_load(path), x))
        print(f"| {name} | {ratios[len(ratios) // 2]:.3f} | {ratios[0]:.3f} | {ratios[-1]:.3f} | "
              f"{sum(r > 0.1 for r in ratios)} of {len(ratios)} |", flush=True)


def groupnorm() -> None:
    """HunyuanVideo (GroupNorm over time and space) on latents of photo clips instead of random latents.

    No trained GroupNorm-family model can be made from the fixture (see docs/photo_fixture.md), so this is
    the model of benchmarks/groupnorm_decode.py (N(0, 0.05) weights), fed what its own encoder makes of the
    held-out photo clips: latents with the structure of real, moving content.
    """
    from groupnorm_decode import _row, as_frames, hunyuan

    ref, ours = hunyuan(0.05)
    ref.use_framewise_encoding = ref.use_framewise_decoding = False  # the whole clip in one call each
    clips = held_out_clips(frames=33, size=64, per_photo=1)
    with torch.no_grad():
        encoded = [(photo, ref.encode(clip.permute(3, 0, 1, 2)[None].mul(2).sub(1)).latent_dist.mean)
                   for photo, clip in clips]
    control = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(1))  # groupnorm_decode's latent
    cases = [("control: groupnorm_decode.py's random latent", control)] + [
        (f"{photo}, latent std {latent.std().item():.3f}", latent) for photo, latent in encoded] + [
        (f"{photo}, latent rescaled to std 1", (latent - latent.mean()) / latent.std()) for photo, latent in encoded[1:2]]
    print("HunyuanVideo (diffusers layout, widths 32-64, N(0, 0.05) weights), decoding its own encoder's latent "
          "(mean) of held-out photo clips 33x64², vs one decoder call over the whole clip:\n")
    for label, latent in cases:
        with torch.no_grad():
            whole = as_frames(ref.decode(latent).sample)
        print(f"| {label}, {tuple(latent.shape[1:])} | max error vs whole clip | PSNR |")
        print("|---|---:|---:|")
        for passes in (0, 1, 2):
            _row(f"FrameStream, {passes} gathering pass(es)", engine.decode(ours, latent, statistics_passes=passes), whole)
        _row("FrameStream, 1 pass, 32 px tiles / 16 px overlap", engine.decode(ours, latent, tile=32, overlap=16), whole)
        print()


if __name__ == "__main__":
    torch.set_num_threads(2)
    parts = {"quality": quality, "seams": seams, "openness": openness, "groupnorm": groupnorm}
    print(f"`python benchmarks/photo_fixture.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), "\n")
    for part in sys.argv[1:] or list(parts):
        parts[part]()
        print()
