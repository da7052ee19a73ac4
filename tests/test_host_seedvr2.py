"""SeedVR2's VAE against the host's own module (``comfy/ldm/seedvr/vae.py``, ComfyUI 0.33 and later), in this
process. The host builds the release's widths only (a module constant), so the test builds its classes at a
reduced width by setting that constant while they are made, loads random weights into them strictly, and
compares its ``decode`` / ``encode`` (its own one-latent-frame-a-call slicing) and its tiled decode with
FrameStream's on the same tensors (runs only with ``COMFYUI_DIR``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from framestream.nodes.vae_input import video_vae
from framestream.vae_core import build_vae, decode, encode
from framestream.vae_core.quality import psnr

from helpers import COMFYUI_DIR, TOL, host_module, host_version, needs_host
from oracle import seedvr2_host_module, seedvr2_weights

pytestmark = [needs_host, pytest.mark.skipif(bool(COMFYUI_DIR) and host_version() < (0, 33),
                                             reason="the host reads SeedVR2 from 0.33 on")]


@pytest.fixture(scope="module")
def host():
    return host_module("comfy.ldm.seedvr.vae")


def host_vae(seedvr, seed: int = 0):
    """The host's wrapper at :data:`oracle.SEEDVR2_SMALL` widths, weights scaled by fan-in."""
    return seedvr2_host_module(seedvr, seedvr2_weights(seed=seed))


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """The host's ``[1, 3, T, H, W]`` in [-1, 1] as its VAE Decode hands it on: ``[T, H, W, 3]`` in [0, 1]."""
    return ((video[0].float() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


@pytest.mark.parametrize("length,per_step", [(1, 1), (2, 1), (3, 2), (6, 1), (6, 4)])
def test_decode_equals_the_hosts(host, length, per_step):
    """One and two latent frames are the host's one-call path; longer clips its one-frame-a-call slicing."""
    module = host_vae(host)
    ours = build_vae(module.state_dict()).use_host_conventions(module)
    z = torch.randn(1, 16, length, 4, 6, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = frames_of(module.decode(z))
    got = decode(ours, z, frames_per_step=per_step)
    assert got.shape == expected.shape == (4 * length - 3, 32, 48, 3)
    assert (got - expected).abs().max().item() <= TOL
    assert expected.std().item() > 0.05


@pytest.mark.parametrize("frames", [1, 5, 8, 13])
def test_encode_equals_the_hosts(host, frames):
    """8 frames: the host merges the last short chunk into the one before; the trailing 3 reach no latent."""
    module = host_vae(host)
    ours = build_vae(module.state_dict())
    x = torch.rand(frames, 32, 48, 3, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = module.comfy_format_encoded(module.encode(x.permute(3, 0, 1, 2)[None] * 2 - 1))
    got = encode(ours, x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL


def test_the_hosts_loaded_module_decodes_through_the_nodes_input(host):
    """What a FrameStream node makes of the host's Load VAE (its module's own tensors)."""
    module = host_vae(host, seed=1)
    ours = video_vae(SimpleNamespace(first_stage_model=module))
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = frames_of(module.decode(z))
    assert (decode(ours, z) - expected).abs().max().item() <= TOL


def test_tiles_beside_the_hosts_tiled_decode(host):
    """Neither can be exact (norms and attention see the whole frame); FrameStream's tiles (linear blend) are
    at least as close to the whole frame as the host's (cosine blend) at the same tile and overlap."""
    module = host_vae(host, seed=2)
    ours = build_vae(module.state_dict())
    z = torch.randn(1, 16, 2, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        whole = frames_of(module.decode(z))
        tiling = {"enable_tiling": True, "tile_size": (64, 64), "tile_overlap": (32, 32)}  # px
        host_tiles = frames_of(module.decode(z, seedvr2_tiling=tiling))
    tiled = decode(ours, z, tile=64, overlap=32)
    ours_db, host_db = psnr(tiled, whole), psnr(host_tiles, whole)
    print(f'seedvr2 tiles: ours {ours_db:.1f} dB, host {host_db:.1f} dB')
    assert ours_db >= host_db - 0.5, (ours_db, host_db)
