"""LTX-2's diffusion decoder against the host's own module (``comfy/ldm/lightricks/vae/na_diffusion_decoder.py``,
the host's "LTX 2.4" VAE, ComfyUI 0.33 and later), in this process: the host's ``CausalDiffusionVAE`` built at a
reduced width from a config in the form its files carry, random weights, and its ``decode`` (seed-0 noise drawn
inside, on the CPU) against FrameStream streaming one latent frame a step; then the host's whole path, its
detection and config reading included, from a file (runs only with ``COMFYUI_DIR``)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from framestream.nodes.vae_input import video_vae
from framestream.vae_core import build_vae, decode, load_vae

from helpers import COMFYUI_DIR, TOL, host_module, host_version, needs_host
from oracle import ltx24_host_config, randomise_ltx24

pytestmark = [needs_host, pytest.mark.skipif(bool(COMFYUI_DIR) and host_version() < (0, 33),
                                             reason="the host reads LTX-2's diffusion decoder from 0.33 on")]


@pytest.fixture(scope="module")
def host():
    return host_module("comfy.ldm.lightricks.vae.na_diffusion_decoder")


def host_vae(na, cfg: dict | None = None):
    """The host's module for ``cfg`` (default: :func:`ltx24_host_config`) with every parameter random (the host's
    layers may leave them empty) and random latent statistics; its output layer small, so that few values reach
    the clamp."""
    cfg = cfg or ltx24_host_config()
    torch.manual_seed(0)
    module = na.CausalDiffusionVAE(config=cfg).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        randomise_ltx24(module, gen)
        module.decoder.conv_out.weight.mul_(0.2)
        stats = module.per_channel_statistics
        stats.get_buffer("mean-of-means").copy_(0.3 * torch.randn(128, generator=gen))
        stats.get_buffer("std-of-means").copy_(0.5 + torch.rand(128, generator=gen))
    return module, cfg


def metadata(cfg: dict) -> dict[str, str]:
    """The file's safetensors metadata, as Lightricks' checkpoint carries the config."""
    return {"config": json.dumps({"vae": cfg})}


def ours_of(module, cfg):
    return build_vae(module.state_dict(), metadata=metadata(cfg)).use_host_conventions(module)


def host_frames(module, z):
    """The host module's frames ``[T, H, W, 3]`` in [0, 1] (as its VAE wrapper turns them)."""
    with torch.no_grad():
        out = module.decode(z)
    return ((out.clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 3, 0)


def assert_decodes_as_the_host(module, ours, z) -> None:
    expected = host_frames(module, z)
    got = decode(ours, z, frames_per_step=1, tile="none")
    assert got.shape == expected.shape == (8 * z.shape[2] - 7, 32 * z.shape[3], 32 * z.shape[4], 3)
    assert (got - expected).abs().max().item() <= TOL
    assert expected.std().item() > 0.05  # frames that differ


@pytest.mark.parametrize("length,height,width", [(1, 2, 2), (2, 2, 2), (3, 2, 2), (6, 2, 2), (3, 3, 2)])
def test_decode_equals_the_hosts(host, length, height, width):
    """The host's LATENT is normalised by the file's statistics and its noise drawn for the whole clip with seed 0.
    One latent frame makes one frame (the diffusion stage's grid shorter than its kernel, clamped as the host
    does); six are streamed one a step, past the diffusion stage's 11-frame box; a grid of 3x2 latent pixels."""
    module, cfg = host_vae(host)
    ours = ours_of(module, cfg)
    z = torch.randn(1, 128, length, height, width, generator=torch.Generator().manual_seed(length * height))
    assert_decodes_as_the_host(module, ours, z)


def test_the_releases_kernels_clamped_to_a_small_grid(host):
    """A config without kernels: the release's (3, 7, 7) ... boxes, larger than 2x2 latent pixels, clamped to the
    grid by the host and FrameStream alike."""
    cfg = ltx24_host_config()
    del cfg["decoder"]["stage_kernels"], cfg["decoder"]["stage5_kernel"]
    module, cfg = host_vae(host, cfg)
    ours = ours_of(module, cfg)
    assert ours.cfg.stage_kernels[0] == (3, 7, 7) and ours.cfg.stage5_kernel == (11, 11, 11)
    assert_decodes_as_the_host(module, ours, torch.randn(1, 128, 4, 2, 2, generator=torch.Generator().manual_seed(4)))


def test_wider_temporal_kernels(host):
    """Boxes of 5 frames in the stages after a temporal upsample (the host reads any kernel the config gives):
    streamed a latent frame a step, each block keeps the keys its waiting queries still read."""
    module, cfg = host_vae(host, ltx24_host_config(decoder_stage_kernels=((3, 1, 1), (3, 3, 3), (5, 3, 3), (5, 5, 5))))
    ours = ours_of(module, cfg)
    assert_decodes_as_the_host(module, ours, torch.randn(1, 128, 6, 2, 2, generator=torch.Generator().manual_seed(6)))


def test_the_hosts_whole_path_from_a_file(host, tmp_path):
    """Load VAE's path: the host detects the file by its keys, reads the config from its metadata and decodes as
    ``comfy.sd.VAE.decode`` does (its working dtype, float32 on the CPU). FrameStream decodes the same: from the
    file (FrameStream Load VAE) and from the host's loaded module (the nodes given the host's VAE)."""
    import comfy.sd
    import comfy.utils

    module, cfg = host_vae(host)
    path = tmp_path / "ltx24_test.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path, metadata=metadata(cfg))
    sd, meta = comfy.utils.load_torch_file(str(path), return_metadata=True)
    vae = comfy.sd.VAE(sd=sd, metadata=meta)
    assert type(vae.first_stage_model).__name__ == "CausalDiffusionVAE" and vae.latent_channels == 128
    assert vae.vae_dtype == torch.float32
    z = torch.randn(1, 128, 3, 3, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = vae.decode(z)[0]
    assert (expected - host_frames(module, z)).abs().max().item() <= TOL  # the module above, as the host loaded it
    from_file = load_vae(str(path)).use_host_conventions()
    from_host = video_vae(SimpleNamespace(first_stage_model=vae.first_stage_model))
    for label, ours in (("file", from_file), ("host module", from_host)):
        got = decode(ours, z, frames_per_step=1, tile="none")
        assert got.shape == expected.shape == (17, 96, 64, 3), label
        assert (got - expected).abs().max().item() <= TOL, label
