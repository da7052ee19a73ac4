"""Kandinsky 6's video VAE against diffusers' AutoencoderKLKVAEVideo with the same random weights: the release's
chunks (5 latent frames, then 4; 17 pixel frames, then 16) decoded and encoded exactly, streamed, tiled."""

import pytest
import torch

from framestream.vae_core import DecodeStream, EncodeStream, build_vae, decode, encode
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models import registry
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming import group_norm

from helpers import assert_damaged_files_named, norm_inputs_moments
from oracle import diffusers_kandinsky

TOL = 1e-4
NAME = "Kandinsky 6 video VAE"


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_kandinsky()
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()})


def diffusers_frames(ref, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref.decode(z).sample[0].permute(1, 2, 3, 0).add(1).div(2).clamp(0, 1)


def diffusers_latent(ref, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()


def latent(frames: int, h: int = 4, w: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 16, frames, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", [1, 2, 5, 6, 9, 11])
def test_decode_equals_diffusers_whatever_the_steps_asked(pair, length):
    """Steps are the release's chunks, whatever frames_per_step says; 6 latent frames end in a chunk of one,
    which the release does not upsample in time (18 frames, not 21)."""
    ref, ours = pair
    z = latent(length, seed=length)
    expected = diffusers_frames(ref, z)
    assert len(expected) == ours.decoded_frames(length)
    for per_step in (1, 3):
        got = decode(ours, z, frames_per_step=per_step)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("frames", [1, 9, 17, 41])
def test_encode_equals_diffusers(pair, frames):
    ref, ours = pair
    x = torch.rand(frames, 32, 48, 3, generator=torch.Generator().manual_seed(frames))
    expected = diffusers_latent(ref, x)
    got = encode(ours, x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("pieces", [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [3, 4, 3], [10]])
def test_a_stream_given_its_length_decodes_as_diffusers_one_call(pair, pieces):
    ref, ours = pair
    z = latent(10, seed=7)
    expected = diffusers_frames(ref, z)
    with DecodeStream(ours, frames=10) as stream:
        out, start = [], 0
        for n in pieces:
            out.append(stream.push(z[:, :, start : start + n]))
            start += n
        out.append(stream.flush())
    assert (torch.cat(out) - expected).abs().max().item() <= TOL
    # a chunk's frames leave once its latent frames are all in: the first chunk has 5, then 4, the last 1 (1 frame)
    assert [len(o) for o in out] == {1: [0] * 4 + [17, 0, 0, 0, 16, 1, 0], 3: [0, 17, 17, 0], 10: [34, 0]}[pieces[0]]


def test_an_encode_stream_given_its_length_encodes_as_one_call(pair):
    ref, ours = pair
    x = torch.rand(41, 16, 16, 3, generator=torch.Generator().manual_seed(3))
    with EncodeStream(ours, frames=41) as stream:
        parts = [stream.push(x[start : start + 7]) for start in range(0, 41, 7)] + [stream.flush()]
    got = torch.cat([p for p in parts if p.numel()], dim=2)
    assert (got - diffusers_latent(ref, x)).abs().max().item() <= TOL


def test_a_stream_needs_the_length_up_front(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match=f"the {NAME} cuts a clip into steps by its length"):
        DecodeStream(ours).push(latent(2))
    with pytest.raises(FrameStreamError, match="cuts a clip into steps by its length"):
        EncodeStream(ours).push(torch.rand(5, 16, 16, 3))


@pytest.mark.slow
def test_tiles_gather_the_chunks_statistics_within_45_db(pair):
    """The seams: 128 px tiles at the default 64 px overlap gather each GroupNorm's statistics over the chunk's
    tiles norm by norm, exactly as if given them, and are within 45 dB of the whole frame. One estimating pass
    (``statistics_passes=1``) normalises every norm but the first with partial sums and falls short."""
    _, ours = pair
    z = latent(5, 16, 24, seed=11)
    whole = decode(ours, z)
    exact = norm_inputs_moments(ours, lambda: ours.decode_chunk(z))
    stream = DecodeStream(ours, frames=5, tile=128, pooling=group_norm.Pooling(frozen=exact))
    given = torch.cat([stream.push(z), stream.flush()])
    gathered = decode(ours, z, tile=128)
    estimated = psnr(decode(ours, z, tile=128, statistics_passes=1), whole)
    x = torch.rand(9, 128, 192, 3, generator=torch.Generator().manual_seed(12))
    encoded_whole = encode(ours, x)
    encoded = psnr(encode(ours, x, tile=128), encoded_whole, encoded_whole.abs().max().item())
    print(f"Kandinsky 6, 128 px tiles, 64 px overlap: {psnr(gathered, whole):.1f} dB gathered, {estimated:.1f} dB "
          f"estimated in one pass; encode {encoded:.1f} dB")
    assert (gathered - given).abs().max().item() <= 1e-4
    assert psnr(gathered, whole) >= 45 > estimated and encoded >= 30


def test_the_full_width_release_structure_at_a_tiny_size():
    ref = diffusers_kandinsky(seed=2, ch=128, ch_mult=(1, 2, 4, 8), num_res_blocks=2)
    ours = build_vae(ref.state_dict())
    assert ours.cfg.widths == (128, 256, 512, 1024) and ours.cfg.layers == 2
    z = latent(2, 2, 2, seed=5)
    assert (decode(ours, z) - diffusers_frames(ref, z)).abs().max().item() <= TOL
    x = torch.rand(5, 16, 16, 3, generator=torch.Generator().manual_seed(6))
    assert (encode(ours, x) - diffusers_latent(ref, x)).abs().max().item() <= TOL


def test_recognised_as_itself_only(pair):
    ref, _ = pair
    assert [f.name for f in registry.FAMILIES if f.recognises(ref.state_dict())] == [NAME]


def test_bad_inputs_get_one_clear_message(pair):
    ref, ours = pair
    with pytest.raises(FrameStreamError, match=f"latent has 12 channels but the {NAME} expects 16"):
        decode(ours, torch.randn(1, 12, 2, 2, 2))
    assert_damaged_files_named(ref.state_dict(), NAME, "encoder.conv_in.", "decoder.up.1.block.0.conv1.conv.weight")
