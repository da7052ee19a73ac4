"""The HunyuanVideo VAE against diffusers' AutoencoderKLHunyuanVideo with shared random weights (reduced widths)."""

import pytest
import torch

from framestream.vae_core.streaming import engine, group_norm
from framestream.vae_core import build_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming.state import StreamState

from helpers import norm_inputs_moments
from oracle import diffusers_hunyuan, to_host_layout

TOL = 1e-4


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_hunyuan()
    return ref, build_vae(ref.state_dict())


def frames_of(pixels):
    return ((pixels + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def psnr(a, b):
    return (10 * torch.log10(1 / (a - b).square().mean())).item()


def test_whole_clip_matches_diffusers(pair):
    ref, ours = pair
    z = torch.randn(1, 16, 4, 3, 4, generator=torch.Generator().manual_seed(1))
    x = torch.rand(1, 3, 9, 24, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        expected, got = ref.decode(z).sample, ours.decode_chunk(z)
        assert got.shape == expected.shape == (1, 3, 13, 24, 32)
        assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()
        expected, got = ref.encode(x).latent_dist.mean, ours.encode_chunk(x)
        assert got.shape == expected.shape == (1, 16, 3, 3, 4)
        assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


@pytest.mark.parametrize("per_step", [1, 2, 3])
def test_streaming_with_the_clips_statistics_is_exact(pair, per_step):
    """Causal convs, the first-frame upsampling and the attention's carried keys stream exactly: given the whole
    clip's GroupNorm statistics, any cut into steps decodes the whole clip's frames."""
    ref, ours = pair
    z = torch.randn(1, 16, 6, 2, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref.decode(z).sample
    state = StreamState(pooling=group_norm.Pooling(frozen=norm_inputs_moments(ours, lambda: ours.decode_chunk(z))))
    pieces = []
    with state.active(), torch.no_grad():
        for start, stop in ours.decode_steps(6, per_step):
            pieces.append(ours.decode_chunk(z[:, :, start:stop]))
            state.carries.commit()
    got = torch.cat(pieces, dim=2)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


@pytest.mark.slow
def test_streamed_decode_beats_diffusers_framewise(pair):
    """One pass gathers the clip's statistics, the next applies them; diffusers' own long-clip decode cuts the clip
    into overlapping windows with their own statistics and blends them."""
    ref, ours = pair
    z = torch.randn(1, 16, 9, 6, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = frames_of(ref.decode(z).sample)
        ref.use_framewise_decoding = True
        framewise = frames_of(ref.decode(z).sample)
        ref.use_framewise_decoding = False
    streamed = engine.decode(ours, z, frames_per_step=1)  # (a clip in one step is exact: tests/test_step_size.py)
    running = engine.decode(ours, z, statistics_passes=0, frames_per_step=1)
    error = (streamed - whole).abs().max().item()
    assert error < (running - whole).abs().max().item()
    assert error * 10 < (framewise - whole).abs().max().item()
    assert psnr(streamed, whole) > 55


def test_tiles_share_the_clips_statistics(pair):
    _, ours = pair
    z = torch.randn(1, 16, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole = frames_of(ours.decode_chunk(z))
    tiled = engine.decode(ours, z, tile=32, overlap=16)
    assert psnr(tiled, whole) > 45


def test_the_hosts_layout_loads_and_agrees(pair):
    ref, ours = pair
    host = to_host_layout(ref.state_dict())
    assert "decoder.up.3.block.0.conv1.conv.weight" in host and host["decoder.mid.attn_1.q.weight"].ndim == 5
    theirs = build_vae(host, "hunyuan_video_vae_bf16.safetensors")
    assert theirs.family == "HunyuanVideo VAE"
    z = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(theirs.decode_chunk(z), ours.decode_chunk(z))


def test_bad_inputs_get_clear_errors(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match="latent has 128 channels but the HunyuanVideo VAE expects 16"):
        engine.decode(ours, torch.randn(1, 128, 2, 2, 2))
    with pytest.raises(FrameStreamError, match="statistics_passes must be 0 or more"):
        engine.decode(ours, torch.randn(1, 16, 2, 2, 2), statistics_passes=-1)
    sd = dict(diffusers_hunyuan(seed=7).state_dict())
    del sd["decoder.up_blocks.1.resnets.0.norm2.weight"]
    with pytest.raises(FrameStreamError, match="hy.safetensors looks like a HunyuanVideo VAE but does not match"):
        build_vae(sd, "hy.safetensors")
