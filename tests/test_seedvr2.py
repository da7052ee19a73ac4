"""SeedVR2's VAE against a whole-clip reference written from the host's code (tests/seedvr2_oracle.py; the host's
own module in tests/test_host_seedvr2.py): decoded and encoded exactly however the clip is cut into steps or
pushed, carries flat in length, tiles close, its files read and bad ones named."""

import pytest
import torch

import seedvr2_oracle
from framestream.vae_core import DecodeStream, EncodeStream, build_vae, decode, encode
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models import registry
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming.state import StreamState
from framestream.vae_core.streaming.traits import NormStatistics

from helpers import assert_damaged_files_named
from oracle import seedvr2_weights

TOL = 1e-4
NAME = "SeedVR2 VAE"


@pytest.fixture(scope="module")
def pair():
    sd = seedvr2_weights()
    return sd, build_vae(dict(sd))


def latent(frames: int, h: int = 4, w: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 16, frames, h, w, generator=torch.Generator().manual_seed(seed))


def reference_frames(sd, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return seedvr2_oracle.decode(sd, z)[0].permute(1, 2, 3, 0).add(1).div(2).clamp(0, 1)


def reference_latent(sd, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return seedvr2_oracle.encode(sd, frames.permute(3, 0, 1, 2)[None] * 2 - 1)


@pytest.mark.parametrize("length", [1, 2, 3, 6])
def test_decode_equals_the_whole_clip_however_it_is_cut(pair, length):
    """4T - 3 frames; the temporal upsamplers make one frame of the clip's first latent frame wherever the
    first step ends."""
    sd, ours = pair
    z = latent(length, seed=length)
    expected = reference_frames(sd, z)
    assert len(expected) == ours.decoded_frames(length) == 4 * length - 3
    assert expected.std().item() > 0.05
    for per_step in (1, 2, 4):
        got = decode(ours, z, frames_per_step=per_step)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOL


def test_frames_leave_as_their_latent_arrives(pair):
    """Causal: each push of one latent frame gives its four frames at once, equal to the whole clip's."""
    sd, ours = pair
    z = latent(5, seed=3)
    stream = DecodeStream(ours)
    pieces = [stream.push(z[:, :, i : i + 1]) for i in range(5)]
    assert [len(p) for p in pieces] == [1, 4, 4, 4, 4]
    assert len(stream.flush()) == 0
    assert (torch.cat(pieces) - reference_frames(sd, z)).abs().max().item() <= TOL


@pytest.mark.parametrize("frames", [1, 5, 8, 13])
def test_encode_equals_the_whole_clip(pair, frames):
    """8 frames: the last 3 fill no latent frame and are left out, as the host does (they reach none)."""
    sd, ours = pair
    x = torch.rand(frames, 32, 48, 3, generator=torch.Generator().manual_seed(frames))
    used = 4 * ((frames - 1) // 4) + 1
    expected = reference_latent(sd, x[:used])
    got = encode(ours, x, latents_per_step=2)
    assert got.shape == expected.shape == (1, 16, (frames - 1) // 4 + 1, 4, 6)
    assert (got - expected).abs().max().item() <= TOL


def test_encode_pushed_a_frame_at_a_time(pair):
    sd, ours = pair
    x = torch.rand(13, 32, 48, 3, generator=torch.Generator().manual_seed(4))
    stream = EncodeStream(ours)
    got = torch.cat([stream.push(x[i : i + 1]) for i in range(13)] + [stream.flush()], dim=2)
    assert (got - reference_latent(sd, x)).abs().max().item() <= TOL


def test_full_width_at_a_tiny_size():
    """The release's widths (250.6 M parameters, 250 tensors), two latent frames of 2x2."""
    sd = seedvr2_weights((128, 256, 512, 512), seed=1)
    assert len(sd) == 250 and sum(v.numel() for v in sd.values()) == 250_648_227  # the host builds the same 250 tensors
    ours = build_vae(dict(sd))
    z = latent(2, 2, 2, seed=8)
    assert (decode(ours, z) - reference_frames(sd, z)).abs().max().item() <= TOL


def test_half_precision_weights_decode_in_their_dtype(pair):
    """bf16 weights (a GPU's, or a plan's probe on the CPU): every layer stays in bf16, the plain layout on the
    CPU, and the frames stay near fp32's."""
    sd, _ = pair
    half = build_vae({k: v.to(torch.bfloat16) for k, v in sd.items()})
    z = latent(2, seed=11)
    assert (decode(half, z) - reference_frames(sd, z)).abs().max().item() < 0.1


def test_carries_do_not_grow_with_the_clip(pair):
    """What the convs carry between steps is the same for a clip four times as long."""
    _, ours = pair

    def peak(length: int) -> int:
        state, biggest = StreamState(), 0
        z = latent(length)
        with torch.no_grad(), state.active():
            for step in range(length):
                state.begin_step(ending=step == length - 1)
                ours.decode_chunk(z[:, :, step : step + 1])
                state.carries.commit()
                biggest = max(biggest, state.carries.carry_bytes())
        return biggest

    assert peak(3) == peak(12) > 0


def test_tiles_gather_each_frames_statistics(pair):
    """Tiles cannot be exact (convs see zeros past a tile's edge), but every norm takes its frame's statistics
    gathered over the step's tiles: even estimated in one pass (``statistics_passes=1``, the quick check; the
    default gathers them norm by norm, below) closer to the whole frame than each tile's own statistics, and the
    tiled stream pushed a latent frame at a time equals the tiled decode."""
    sd, ours = pair
    z = latent(2, 24, 24, seed=5)
    whole = decode(ours, z)
    estimated = decode(ours, z, tile=128, overlap=64, statistics_passes=1)
    try:
        ours.norms = NormStatistics("frame")  # this instance only, for one decode
        own = decode(ours, z, tile=128, overlap=64)
    finally:
        del ours.norms
    assert psnr(estimated, whole) >= 38 and psnr(estimated, whole) >= psnr(own, whole) + 3
    stream = DecodeStream(ours, tile=128, overlap=64, statistics_passes=1)
    pieces = torch.cat([stream.push(z[:, :, :1]), stream.push(z[:, :, 1:]), stream.flush()])
    assert (pieces - estimated).abs().max().item() <= TOL


@pytest.mark.slow
def test_tiles_gathered_norm_by_norm_come_closer_than_the_estimate(pair):
    """The default: each norm's statistics gathered once the norms before it have theirs (one trial pass per norm
    in the tiles): within 44 dB of the whole frame at 128 px tiles (the convs' reach, about 100 px, is what is
    left), closer than one pass's estimate."""
    _, ours = pair
    z = latent(2, 24, 24, seed=5)
    whole = decode(ours, z)
    gathered = psnr(decode(ours, z, tile=128, overlap=64), whole)
    assert gathered >= 44 and gathered > psnr(decode(ours, z, tile=128, overlap=64, statistics_passes=1), whole)


def test_encode_in_tiles(pair):
    """The downsamplers pad below and right of each tile after the carry, so the carries stay on the tiles' grid;
    a tiled encode streamed over three steps is close to the whole frame's."""
    _, ours = pair
    x = torch.rand(9, 192, 192, 3, generator=torch.Generator().manual_seed(6))
    whole = encode(ours, x)
    tiled = encode(ours, x, tile=128, overlap=64)
    assert tiled.shape == whole.shape and psnr(tiled, whole, whole.abs().max().item()) >= 33


def test_recognised_in_its_layouts(pair):
    """The release's file, inside a whole model (``vae.``), and with the attention's pre-2023 names."""
    sd, _ = pair
    assert registry.family_of(sd).name == NAME
    assert build_vae({"vae." + k: v for k, v in sd.items()}).family == NAME
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in sd.items():
        for new, before in old.items():
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{before}.")
        renamed[key] = value
    assert any(".query." in k for k in renamed)
    z = latent(2, seed=2)
    assert (decode(build_vae(renamed), z) - reference_frames(sd, z)).abs().max().item() <= TOL


def test_damaged_files_are_named(pair):
    sd, _ = pair
    assert_damaged_files_named(sd, NAME, "decoder.up_blocks.3.", "decoder.conv_in.weight")


def test_widths_off_the_norm_groups_are_refused(pair):
    sd = dict(pair[0])
    first = sd["encoder.down_blocks.0.resnets.0.conv1.weight"]
    sd["encoder.down_blocks.0.resnets.0.conv1.weight"] = torch.cat([first, first[:16]])
    with pytest.raises(FrameStreamError, match=r"looks like a SeedVR2 VAE but its widths \(48, 64, 96, 96\) are not "
                                               "multiples of the 32 groups of its norms"):
        build_vae(sd)


def test_a_latent_of_another_family_is_refused(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match="16"):
        decode(ours, torch.randn(1, 128, 3, 3, 2))
