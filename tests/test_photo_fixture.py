"""The shipped photo fixture (``vae_core/data/wan21_photo_fixture.safetensors``, ``tools/train_photo_fixture.py``).

No photographs are stored and scikit-image is not needed: reconstruction is
checked on a synthetic photo-like texture (a seeded 1/f colour noise image,
panned and zoomed the way the training clips are), with thresholds a little
under what the shipped weights measure (docs/photo_fixture.md). The branch
openness test also runs the first fixture, whose near-closed branches fail it.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from train_photo_fixture import branch_openness, photo_clip  # noqa: E402

from framestream.vae_core import load_vae  # noqa: E402
from framestream.vae_core.demo import FIXTURE_PATH  # noqa: E402
from framestream.vae_core.models.wan.model import WanConfig, WanVAE  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import engine  # noqa: E402

PATH = os.path.join(ROOT, "vae_core", "data", "wan21_photo_fixture.safetensors")
WIDTH = 16
# measured on the shipped weights (docs/photo_fixture.md): 9x64² texture clip 19.90 dB streamed (the first
# fixture 19.63, random weights about 10); median branch openness on the 5x32² clip 0.251 (first fixture 0.019)
TEXTURE_PSNR = 19.9
OPEN_MEDIAN = 0.1


@pytest.fixture(scope="module")
def photo_vae():
    return load_vae(PATH, torch.device("cpu"), torch.float32).eval()


@pytest.fixture(scope="module")
def first_vae():
    return load_vae(FIXTURE_PATH, torch.device("cpu"), torch.float32).eval()


def pink_noise_photo(size: int = 192, seed: int = 0) -> torch.Tensor:
    """A photo-like ``[3, size, size]`` image in [0, 1]: 1/f noise, its colours correlated as in photographs."""
    gen = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    amplitude = 1 / (fy**2 + fx**2).sqrt().clamp_min(1 / size)
    spectrum = torch.randn(3, size, size // 2 + 1, 2, generator=gen)
    image = torch.fft.irfft2(torch.view_as_complex(spectrum) * amplitude, s=(size, size))
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.3], [0.0, 0.0, 0.4]])  # shared luminance, some chroma
    image = torch.einsum("ij,jhw->ihw", mix.T, image / image.std())
    return (0.5 + 0.18 * image).clamp(0, 1)


def texture_clip(frames: int = 9, size: int = 64) -> torch.Tensor:
    return photo_clip(pink_noise_photo(), frames, size, torch.Generator().manual_seed(3), zoom=(0.9, 1.1))


def test_file_is_small_fp16_and_has_the_wan21_layout_at_width_16():
    assert os.path.getsize(PATH) <= 12 * 2**20
    expected = {k: tuple(v.shape) for k, v in WanVAE(WanConfig.wan21(WIDTH)).state_dict().items()}
    with safe_open(PATH, "pt") as f:
        stored = {k: f.get_slice(k) for k in f.keys()}
        assert {k: tuple(s.get_shape()) for k, s in stored.items()} == expected
        assert {s.get_dtype() for s in stored.values()} == {"F16"}
        assert f.metadata()["trainer"] == "tools/train_photo_fixture.py"


def test_loads_through_the_package_as_wan21_at_width_16(photo_vae):
    assert isinstance(photo_vae, WanVAE)
    assert photo_vae.cfg == WanConfig.wan21(WIDTH)
    assert (photo_vae.spatial_ratio, photo_vae.temporal_ratio, photo_vae.latent_channels) == (8, 4, 16)


def test_residual_and_attention_branches_are_open_unlike_the_first_fixture(photo_vae, first_vae):
    x = texture_clip(5, 32).permute(3, 0, 1, 2)[None].mul(2).sub(1)
    photo = sorted(r for _, r in branch_openness(photo_vae, x))
    first = sorted(r for _, r in branch_openness(first_vae, x))
    assert len(photo) == len(first) == 26  # Wan 2.1's 24 residual blocks and 2 attentions
    assert photo[len(photo) // 2] > OPEN_MEDIAN
    assert first[len(first) // 2] < OPEN_MEDIAN  # the measure does tell closed branches apart


def test_reconstructs_a_photo_like_texture_streamed(photo_vae):
    clip = texture_clip()
    score = psnr(engine.decode(photo_vae, engine.encode(photo_vae, clip)), clip)
    assert score > TEXTURE_PSNR - 1.0
