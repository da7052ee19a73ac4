"""Streamed decode and encode equal diffusers' reference algorithm on the same random weights.

Tolerance: max |difference| <= 1e-4 in fp32 (the issue's bar), on raw decoder
outputs before any clamp, for every frames-per-step.
"""

import pytest
import torch

from framestream.vae_core.streaming import engine
from framestream.vae_core import build_wan
from framestream.vae_core.streaming.state import StreamState

from oracle import diffusers_decode_raw, diffusers_wan

TOL = 1e-4


def streamed_decode_raw(vae, z, per_step):
    """Our model in chunks of ``per_step`` latent frames, concatenated (test-side only)."""
    state, outs = StreamState(), []
    with torch.no_grad(), state.active():
        for start in range(0, z.shape[2], per_step):
            outs.append(vae.decode_chunk(z[:, :, start : start + per_step]))
            state.carries.commit()
    return torch.cat(outs, 2)


@pytest.mark.parametrize("pair", ["wan21_pair", "wan22_pair"])
@pytest.mark.parametrize("per_step", [1, 2, 3, 7])
def test_decode_matches_reference_for_every_step_size(pair, per_step, request):
    ref, ours = request.getfixturevalue(pair)
    z = torch.randn(1, ours.latent_channels, 7, 3, 5, generator=torch.Generator().manual_seed(per_step))
    expected = diffusers_decode_raw(ref, z)
    got = streamed_decode_raw(ours, z, per_step)
    assert got.shape == expected.shape == (1, 3, 25, 3 * ours.spatial_ratio, 5 * ours.spatial_ratio)
    assert expected.abs().max() > 1.0  # a meaningful signal, not a near-zero output
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("pair", ["wan21_pair", "wan22_pair"])
def test_engine_decode_equals_host_formula_on_reference(pair, request):
    """The engine's IMAGE output is clamp((x + 1) / 2) of the reference decode, laid out [B*T, H, W, 3]."""
    ref, ours = request.getfixturevalue(pair)
    z = torch.randn(2, ours.latent_channels, 3, 2, 3, generator=torch.Generator().manual_seed(5))
    frames = engine.decode(ours, z, frames_per_step=2)
    expected = torch.cat([diffusers_decode_raw(ref, z[i : i + 1]) for i in range(2)])
    expected = ((expected + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).reshape(-1, *frames.shape[1:])
    assert frames.shape == (2 * 9, 2 * ours.spatial_ratio, 3 * ours.spatial_ratio, 3)
    assert frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert (frames - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("pair", ["wan21_pair", "wan22_pair"])
@pytest.mark.parametrize("latents_per_step", [1, 2])
def test_encode_matches_reference(pair, latents_per_step, request):
    ref, ours = request.getfixturevalue(pair)
    r = ours.spatial_ratio
    frames = torch.rand(13, 2 * r, 3 * r, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).latent_dist.mode()
    got = engine.encode(ours, frames, latents_per_step=latents_per_step)
    assert got.shape == expected.shape == (1, ours.latent_channels, 4, 2, 3)
    assert (got - expected).abs().max().item() <= TOL


def test_whole_clip_call_equals_streaming(wan21_pair):
    """Every temporal layer is defined over the whole sequence, so one call is just a one-chunk stream."""
    _, ours = wan21_pair
    z = torch.randn(1, 16, 4, 2, 2, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        whole = ours.decode_chunk(z)
    assert (whole - streamed_decode_raw(ours, z, 1)).abs().max().item() <= TOL


@pytest.fixture(scope="module")
def full_width_wan21():
    ref = diffusers_wan(dict(base_dim=96, z_dim=16), seed=2)
    return ref, build_wan(ref.state_dict())


def test_full_width_wan21_decode_and_encode(full_width_wan21):
    """The real Wan 2.1 widths (127 M parameters) at a tiny resolution."""
    ref, ours = full_width_wan21
    assert sum(p.numel() for p in ours.parameters()) == pytest.approx(126.9e6, rel=0.01)
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    expected = diffusers_decode_raw(ref, z)
    for per_step in (1, 2):
        assert (streamed_decode_raw(ours, z, per_step) - expected).abs().max().item() <= TOL
    frames = torch.rand(5, 16, 16, 3, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected_latent = ref.encode(frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).latent_dist.mode()
    assert (engine.encode(ours, frames) - expected_latent).abs().max().item() <= TOL


@pytest.mark.parametrize("dtype, max_error", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_low_precision_stays_close_to_fp32(dtype, max_error, wan21_pair):
    ref, _ = wan21_pair
    half = build_wan({k: v.to(dtype) for k, v in ref.state_dict().items()})
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(8))
    full = engine.decode(build_wan(ref.state_dict()), z)
    got = engine.decode(half, z)
    assert got.dtype == torch.float32 and all(p.dtype == dtype for p in half.parameters())
    assert (got - full).abs().max().item() < max_error
    assert (got - full).abs().mean().item() < max_error / 5
