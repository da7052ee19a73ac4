"""MiniMax H3's video VAE against the host's own module (``comfy/ldm/minimax/vae.py``, ComfyUI 0.33 and later), in
this process: the host builds its VAE at the release's size only, so the test builds the host's classes at a
reduced width, in the host's layout, and compares their ``decode`` / ``encode`` with FrameStream's on the same
tensors, the int8 decoder file included (runs only with ``COMFYUI_DIR``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from framestream.nodes.vae_input import video_vae
from framestream.vae_core import build_vae, decode, encode

from helpers import COMFYUI_DIR, TOL, host_module, host_version, needs_host
from oracle import minimax_int8_file, randomised

pytestmark = [needs_host, pytest.mark.skipif(bool(COMFYUI_DIR) and host_version() < (0, 33),
                                             reason="the host reads MiniMax H3 from 0.33 on")]
TILE = 64  # the host's and FrameStream's tiles, so that 96x80 px frames span four


@pytest.fixture(scope="module")
def host():
    return host_module("comfy.ldm.minimax.vae"), host_module("comfy.ops")


def host_vae(minimax, ops, decoder_ops=None):
    """The host's VAE at a reduced width (six levels, its strides), its decoder two blocks of two heads."""
    torch.manual_seed(0)
    model = minimax.MiniMaxH3VideoVAE(ch=32, ch_mult=(1, 1, 2, 2, 2, 2), num_res_blocks=1, tile_size=TILE,
                                      tile_overlap_min=TILE // 4)
    model.decoder = minimax.ViT3DDecoder(num_layers=2, heads=2, dim_head=64,
                                         operations=decoder_ops or ops.disable_weight_init)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():  # the host's init leaves them empty
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
        model.decoder.mask_token.zero_()
    return randomised(model, 2)


def ours_of(host_module):
    return build_vae(host_module.state_dict()).set_tiles(TILE, TILE // 4).use_host_conventions(host_module)


@pytest.mark.parametrize("length", [1, 2, 7, 12])
def test_decode_equals_the_hosts(host, length):
    """The host's LATENT is normalised by the release's statistics and its frames are [0, 1]; one latent frame
    is its single-frame path, two its extra padded window."""
    minimax, ops = host
    module = host_vae(minimax, ops)
    ours = ours_of(module)
    z = torch.randn(1, 24, length, 6, 5, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = module.decode(z)[0].permute(1, 2, 3, 0)
    got = decode(ours, z)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("frames", [1, 22])
def test_encode_equals_the_hosts(host, frames):
    minimax, ops = host
    module = host_vae(minimax, ops)
    ours = ours_of(module)
    x = torch.rand(frames, 96, 80, 3, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = module.encode(x.permute(3, 0, 1, 2)[None] * 2 - 1)
    got = encode(ours, x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL


def test_the_int8_decoder_file_decodes_as_the_host_computes_it(host):
    """The host's int8 + ConvRot layers (comfy-kitchen's CPU path: rotated, per-token int8 activations, integer
    products), loaded as its sd.py loads them: mixed-precision operations for the decoder, float16 computation
    dtype, the module in float32."""
    import comfy.utils

    minimax, ops = host
    plain = host_vae(minimax, ops)
    quantised = minimax_int8_file(plain.state_dict())
    quant = comfy.utils.detect_layer_quantization(quantised, "")
    assert quant is not None
    module = host_vae(minimax, ops, ops.mixed_precision_ops(quant, torch.float16)).to(torch.float32)
    missing, unexpected = module.load_state_dict(quantised, strict=False)
    assert not missing and not unexpected
    z = torch.randn(1, 24, 7, 6, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = module.decode(z)[0].permute(1, 2, 3, 0)
        floats = plain.decode(z)[0].permute(1, 2, 3, 0)
    # from the file, and from the host's loaded module as the nodes take it (its own tensors)
    for ours in (build_vae(quantised), video_vae(SimpleNamespace(first_stage_model=module))):
        got = decode(ours.set_tiles(TILE, TILE // 4).use_host_conventions(module), z)
        assert (got - expected).abs().max().item() <= TOL
        assert (got - floats).abs().max().item() > 10 * TOL  # the integer products are not the float ones


def _available_ram() -> int:
    with open("/proc/meminfo") as info:
        fields = dict(line.split(":", 1) for line in info)
    return int(fields["MemAvailable"].split()[0]) * 1024


def _release_size_file(path) -> None:
    """The release's whole model (2.6 billion parameters) with random weights, in float16 (5.2 GB)."""
    from safetensors.torch import save_file

    from framestream.vae_core.models.minimax.model import MiniMaxH3VAE

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in MiniMaxH3VAE().state_dict().items()}
    gen = torch.Generator().manual_seed(4)
    tensors = {}
    for key, shape in shapes.items():
        unit = key.endswith(("norm1.weight", "norm2.weight", "norm_out.weight"))
        value = 1.0 + 0.1 * torch.randn(shape, generator=gen) if unit else 0.02 * torch.randn(shape, generator=gen)
        tensors[key] = value.to(torch.float16)
    save_file(tensors, path)


@pytest.mark.skipif(not COMFYUI_DIR or _available_ram() < 18 * 2**30,
                    reason="the release-size model needs 10 GB in the host and 5 GB to write it")
def test_the_shipped_workflow_on_the_release_size_model_through_the_hosts_load_vae(comfy):
    """The host's own Load VAE builds the release's size: FrameStream decodes what it loaded (the very same
    tensors) as the host's VAE Decode does, one window of 2x2 latent pixels."""
    from helpers import FILE_TOL, host_load_vae_and_decode, probe, run_shipped_decode
    from helpers import save_latent_input as save_latent

    _, base, _ = comfy
    path = base / "models" / "vae" / "minimax_h3_release_size_test.safetensors"
    _release_size_file(path)
    z = torch.randn(1, 24, 7, 2, 2, generator=torch.Generator().manual_seed(5))
    save_latent(base, "minimax_h3_release.latent", z)
    try:
        frames, fps = run_shipped_decode(comfy, "minimax_h3_decode_to_file.json", path.name,
                                         "minimax_h3_release.latent", host_load_vae_and_decode(path.name,
                                                                                               "host_minimax_release"))
    finally:
        path.unlink()
    host = probe(base, "host_minimax_release").reshape(-1, 32, 32, 3)
    assert frames.shape == host.shape == (22, 32, 32, 3) and fps == 24.0
    assert (frames - host).abs().max().item() <= FILE_TOL
    assert host.std().item() > 0.01  # a decoder whose frames differ
