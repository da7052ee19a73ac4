"""LTX-2's diffusion decoder (the host's LTX 2.4) against diffusers' LTX2VideoDiffusionDecoderModel with the same
random weights and the same seeded noise: every block streamed on its own, one latent frame a step."""

import json
import re

import pytest
import torch

from framestream.vae_core import DecodeStream, build_vae, decode, encode
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models.ltx24.noise import ClipNoise
from framestream.vae_core.streaming.state import StreamState

from helpers import assert_damaged_files_named
from oracle import diffusers_ltx24, ltx24_metadata

TOL = 1e-4
NAME = re.escape("LTX-2 diffusion decoder (LTX-2.4 / 2.5)")


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_ltx24()
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()}, metadata=ltx24_metadata(ref))


def latent(frames: int, h: int = 3, w: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 128, frames, h, w, generator=torch.Generator().manual_seed(seed))


def diffusers_frames(ref, z: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """diffusers' frames in [0, 1], ``[T, H, W, 3]``, from noise drawn as the host draws it (a seeded generator)."""
    with torch.no_grad():
        out = ref.decode(z, generator=torch.Generator().manual_seed(seed)).sample[0]
    return ((out + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


def test_the_random_decoder_is_not_trivial(pair):
    ref, _ = pair
    frames = diffusers_frames(ref, latent(3))
    assert 0.1 < frames.std().item() and ((frames > 0) & (frames < 1)).float().mean().item() > 0.5


@pytest.mark.parametrize("length, per_step", [(3, 1), (5, 2)])
def test_decode_equals_diffusers_streamed(pair, length, per_step):
    """diffusers' attention materialises every score of the clip on the CPU, so its clips are short here."""
    ref, ours = pair
    z = latent(length, seed=length)
    expected = diffusers_frames(ref, z)
    assert len(expected) == ours.decoded_frames(length) == 8 * length - 7
    got = decode(ours, z, frames_per_step=per_step, tile="none")
    assert (got - expected).abs().max().item() <= TOL


def whole_clip(ours, z: torch.Tensor) -> torch.Tensor:
    """FrameStream's model run once over the whole clip (no stream: every block sees every frame), in [0, 1]."""
    with torch.no_grad():
        out = ours.decode_tile(ours.decode_shared(z))[0]
    return ((out + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


def test_frames_leave_before_the_clip_ends(pair):
    """11 latent frames are longer than the blocks' reach (about 6 here): a stream pushed one latent frame at a
    time gives frames while later ones are still to come, and they are the whole clip's (which is diffusers',
    above)."""
    _, ours = pair
    z = latent(11, seed=4)
    stream = DecodeStream(ours, frames=11, frames_per_step=1)
    early = [stream.push(z[:, :, i : i + 1]) for i in range(10)]
    assert sum(len(f) for f in early) > 8
    got = torch.cat([*early, stream.push(z[:, :, 10:], last=True), stream.flush()])
    assert (got - whole_clip(ours, z)).abs().max().item() <= TOL


def test_wider_boxes_after_an_upsampler_stream_exactly():
    """Boxes of 5 frames after the temporal upsamplers: frames held back by a step's pace still find their keys."""
    ref = diffusers_ltx24(seed=5, decoder_stage_kernels=((3, 1, 1), (3, 3, 3), (5, 3, 3), (5, 5, 5)))
    ours = build_vae(dict(ref.state_dict()), metadata=ltx24_metadata(ref))
    z = latent(7, seed=6)
    assert (decode(ours, z, frames_per_step=1, tile="none") - whole_clip(ours, z)).abs().max().item() <= TOL


def test_carries_do_not_grow_with_the_clip(pair):
    """What the blocks carry between steps peaks at the same size for a clip twice as long."""
    _, ours = pair

    def peak(length: int) -> int:
        state, biggest, made, step = StreamState(expected_frames=length, pace=(1, 8)), 0, 0, 0
        z = latent(length)
        with torch.no_grad(), state.active():
            while made < ours.decoded_frames(length):  # the clip's end in its step, then steps feeding nothing
                state.begin_step(ending=step >= length - 1)
                made += ours.decode_tile(ours.decode_shared(z[:, :, step : step + 1])).shape[2]
                state.carries.commit()
                biggest, step = max(biggest, state.carries.carry_bytes()), step + 1
        return biggest

    first, short = peak(1), peak(12)
    assert short > 4 * first and peak(24) <= 1.02 * short  # the end flushes out a few frames differently


def test_host_conventions_and_seed(pair):
    """The host's LATENT is normalised by the file's statistics; another seed is diffusers' with that seed."""
    ref, ours = pair
    z = latent(3, seed=9)
    normalised = (z - ref.latents_mean.view(-1, 1, 1, 1)) / ref.latents_std.view(-1, 1, 1, 1)
    try:
        ours.use_host_conventions().configure(noise_seed=5)
        got = decode(ours, normalised, tile="none")
    finally:
        ours.configure(normalized_latents=False, noise_seed=0)
    assert (got - diffusers_frames(ref, z, seed=5)).abs().max().item() <= TOL
    assert (got - diffusers_frames(ref, z)).abs().max().item() > 0.01  # the seed matters


def test_a_v_predicting_decoder():
    ref = diffusers_ltx24(seed=3, decoder_model_output_type="v")
    ours = build_vae(dict(ref.state_dict()), metadata=ltx24_metadata(ref))
    z = latent(3, seed=2)
    assert (decode(ours, z, frames_per_step=1, tile="none") - diffusers_frames(ref, z)).abs().max().item() <= TOL


def test_the_hosts_layout_reads_the_same(pair):
    """The host's names (fused q, k, v; ``per_channel_statistics``; its config in the metadata)."""
    ref, ours = pair
    sd = {}
    for key, value in ours.state_dict().items():
        key = {"latents_mean": "per_channel_statistics.mean-of-means",
               "latents_std": "per_channel_statistics.std-of-means"}.get(key, key)
        sd[key] = value.clone()
    sd["encoder.conv_in.conv.weight"] = torch.zeros(8, 48, 3, 3, 3)  # the host's file holds an LTX-2 encoder too
    cfg = dict(ref.config)
    host_cfg = {"model_output_type": "x0", "decoder": {
        "in_channels": 128, "patch_size": 4, "head_dim": cfg["decoder_head_dim"],
        "stage_channels": list(cfg["decoder_stage_channels"]), "stage_depths": list(cfg["decoder_stage_depths"]),
        "stage_kernels": [list(k) for k in cfg["decoder_stage_kernels"]] + [[3, 3, 3]],
        "upsamples": [[list(s), r] for s, r in zip(cfg["decoder_upsample_strides"],
                                                   cfg["decoder_upsample_channel_reductions"])],
        "stage5_kernel": list(cfg["decoder_stage5_kernel"]), "t_emb_dim": cfg["decoder_t_emb_dim"]}}
    host = build_vae(sd, metadata={"config": json.dumps({"vae": host_cfg})})
    z = latent(3, seed=1)
    assert torch.equal(decode(host, z, tile="none"), decode(ours, z, tile="none"))


def test_noise_frames_are_the_whole_draw():
    """Frame by frame, in any order, asked again: the values of one ``randn`` of the whole clip."""
    whole = torch.randn(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(7))
    noise = ClipNoise(7, 9, 32, 48)
    parts = [noise.draw(start, min(start + 4, 9)) for start in (0, 4, 8)]
    assert torch.equal(torch.cat(parts, dim=2), whole)
    assert torch.equal(noise.draw(2, 3), whole[:, :, 2:3])


def test_bad_files_are_named(pair):
    ref, _ = pair
    sd = dict(ref.state_dict())
    assert_damaged_files_named(sd, NAME, "decoder.diff_blocks.", "decoder.conv_out.weight")
    with pytest.raises(FrameStreamError, match="it denoises in 3 steps; FrameStream runs the release's one-step"):
        build_vae(sd, metadata={"config": json.dumps({**dict(ref.config), "decoder_num_inference_steps": 3})})


def test_a_file_without_its_config_is_refused_unless_the_shapes_say():
    """The tests' model upsamples as the release does, so the shapes say enough; one that grows the grid
    otherwise cannot be read without the kernels and strides of its config."""
    ref = diffusers_ltx24(decoder_upsample_strides=((1, 2, 2), (2, 2, 1), (2, 2, 2), (2, 1, 2)))
    with pytest.raises(FrameStreamError, match="it has no config and its upsamplers grow the grid"):
        build_vae(dict(ref.state_dict()))
    assert build_vae(dict(ref.state_dict()), metadata=ltx24_metadata(ref)).spatial_ratio == 32


def test_a_latent_of_another_family_is_refused(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match="128"):
        decode(ours, torch.randn(1, 16, 3, 3, 2))


def test_it_only_decodes(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match="only decodes; encode with the LTX-2 VAE"):
        encode(ours, torch.rand(9, 64, 64, 3))
