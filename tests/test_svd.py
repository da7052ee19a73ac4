"""The Stable Video Diffusion VAE against diffusers' AutoencoderKLTemporalDecoder with shared random weights
(reduced widths, the release's depth: four levels, two resnets a level, so the release's temporal reach)."""


from dataclasses import replace

import pytest
import torch

from framestream.vae_core import build_vae, decode, encode
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models.registry import FAMILIES, family_of
from framestream.vae_core.quality import psnr
from framestream.vae_core.streaming import group_norm
from framestream.vae_core.streaming.state import StreamState
from framestream.vae_core.streaming.stream import DecodeStream

from helpers import norm_inputs_moments
from oracle import diffusers_svd, image_to_original

TOL = 1e-4
@pytest.fixture(scope="module")
def pair():
    ref = diffusers_svd()
    return ref, build_vae(ref.state_dict())


def latent(frames, h=2, w=2, seed=1):
    return torch.randn(frames, 4, h, w, generator=torch.Generator().manual_seed(seed))


def as_frames(pixels):
    """diffusers' ``[T, 3, H, W]`` in [-1, 1] -> the engine's ``[T, H, W, 3]`` in [0, 1]."""
    return ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def diffusers_decode(ref, z, chunk=None):
    """One call over the clip, or ``chunk`` frames per call as the pipeline's ``decode_chunk_size``."""
    with torch.no_grad():
        return torch.cat([as_frames(ref.decode(part, num_frames=part.shape[0]).sample)
                          for part in z.split(chunk or z.shape[0])])


@pytest.mark.parametrize("layers", [2, 1])  # 1: a one-resnet mid block, whose attention diffusers never runs
def test_whole_clip_decode_matches_diffusers(pair, layers):
    ref = pair[0] if layers == 2 else diffusers_svd(layers_per_block=1)
    ours = build_vae(ref.state_dict())
    z = latent(6, 2, 3)
    with torch.no_grad():
        expected = ref.decode(z, num_frames=6).sample
        got = ours.decode_chunk(z.transpose(0, 1)[None])[0].transpose(0, 1)
    assert got.shape == expected.shape == (6, 3, 16, 24)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_halos_are_exactly_the_temporal_convs_reach(pair):
    """With the statistics fixed, a frame of each stage's output depends on exactly ``halo`` frames each side of
    its input (beyond, the gradient is a structural zero: zeros padded in; float64, so nothing underflows):
    2 per temporal resnet that runs and 1 for time_conv_out, the mid block's at latent resolution."""
    ref, ours = pair
    assert (ours.streaming.shared_halo, ours.streaming.halo, ours.streaming.blend) == (2 * 2, 2 * 4 * 3 + 1, 0)
    assert ours.latent_layout == "frames" and ours.norms.decoder == "clip" and not ours.streaming.causal
    model = build_vae(ref.state_dict()).double()
    gen = torch.Generator().manual_seed(8)
    stages = ((model.decode_shared, 4, ours.streaming.shared_halo), (model.decode_tile, 64, ours.streaming.halo))
    for stage, channels, halo in stages:
        frames = 2 * halo + 3  # the reach fits inside the clip
        given = torch.randn(1, channels, frames, 2, 2, generator=gen, dtype=torch.float64).requires_grad_()
        state = StreamState(pooling=group_norm.Pooling(frozen=norm_inputs_moments(model, lambda: stage(given.detach()))))
        with state.active():
            grad, = torch.autograd.grad(stage(given)[:, :, frames // 2].sum(), given)
        seen = (grad.abs().sum((0, 1, 3, 4)) > 0).nonzero().flatten().tolist()
        assert seen == list(range(frames // 2 - halo, frames // 2 + halo + 1))


def windows_with_the_clips_statistics(model, z):
    """The engine's windowed pass over ``z`` with every GroupNorm given the whole clip's statistics."""
    video = z.transpose(0, 1)[None]
    pooling = group_norm.Pooling(frozen=norm_inputs_moments(model, lambda: model.decode_chunk(video)))
    stream = DecodeStream(model, statistics_passes=0, pooling=pooling)
    with torch.no_grad():
        out = torch.cat([stream.push(z, last=True), stream.flush()])
    return out, stream.steps


def test_windows_with_the_clips_statistics_are_the_whole_clip(pair):
    """Given the clip's statistics, windows whose halos cover the reach decode the whole clip's frames."""
    ref, ours = pair
    z = latent(72)  # longer than one window can be (20 + 2 * 25 frames): a shorter clip is one window
    expected = diffusers_decode(ref, z)
    release = ours.streaming
    try:
        ours.streaming = replace(release, core=20)  # the first window ends before the clip does, the last after it
        got, steps = windows_with_the_clips_statistics(ours, z)
        assert steps == 4 and (got - expected).abs().max().item() <= TOL
    finally:
        ours.streaming = release


def test_windowed_decode_gathers_the_clips_statistics(pair):
    """Four windows (cores of 25 frames, halos of 25) through the library's decode: the passes gather the temporal
    norms' statistics over the clip, counting each core once, so the frames approach diffusers' one-call
    decode; the pipeline's chunks of 8 each normalise and pad on their own. ``frames_per_step`` paces causal
    decoders only: these windows are the model's."""
    ref, ours = pair
    z = latent(80, seed=2)
    whole, chunked = diffusers_decode(ref, z), diffusers_decode(ref, z, chunk=8)
    gathered = decode(ours, z, frames_per_step=4)  # the model's default passes
    running = decode(ours, z, statistics_passes=0)
    assert gathered.shape == whole.shape == (80, 16, 16, 3)
    assert psnr(gathered, whole) >= 50
    assert psnr(gathered, whole) >= psnr(chunked, whole) + 10
    assert psnr(gathered, whole) >= psnr(running, whole) + 10


@pytest.mark.slow
def test_tiles_approach_the_whole_frame(pair):
    """Tiles pool the temporal norms' statistics over the whole frame; the 2D norms see their own tile only (an
    approximation, as in diffusers' tiled decode), so tiles come closer to the whole frame as they grow, and a
    tile as large as the frame is the frame."""
    _, ours = pair
    z = latent(2, 8, 8, seed=3)
    whole = decode(ours, z)
    small, large = (psnr(decode(ours, z, tile=tile, overlap=16), whole) for tile in (32, 48))
    assert 15 < small < large
    assert torch.equal(decode(ours, z, tile=64, overlap=16), whole)


def test_encode_matches_diffusers_mean(pair):
    ref, ours = pair
    frames = torch.rand(5, 32, 48, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
    got = encode(ours, frames)
    assert got.shape == expected.shape == (5, 4, 4, 6)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


_TIME_LAYERS = [(".spatial_res_block.", "."), (".temporal_res_block.norm1.", ".time_stack.in_layers.0."),
                (".temporal_res_block.conv1.", ".time_stack.in_layers.2."),
                (".temporal_res_block.norm2.", ".time_stack.out_layers.0."),
                (".temporal_res_block.conv2.", ".time_stack.out_layers.3."), (".time_mixer.", "."),
                ("decoder.time_conv_out.", "decoder.conv_out.time_mix_conv.")]


def to_original(sd):
    """Stability's layout (the host's), written from its module names: the inverse of the loader's renaming.
    It has no quant_conv; the time layers get their own names, the rest the image VAEs' original layout."""
    renamed = {}
    for key, value in sd.items():
        if key.startswith("quant_conv."):
            continue
        for old, new in _TIME_LAYERS:
            key = key.replace(old, new)
        renamed[key] = value
    return image_to_original(renamed)


def test_original_layout_loads_and_decodes_identically(pair):
    ref, ours = pair
    original = {f"first_stage_model.{k}": v for k, v in to_original(ref.state_dict()).items()}
    for key in ("decoder.mid.block_1.mix_factor", "decoder.up.0.block.2.time_stack.out_layers.3.weight",
                "decoder.conv_out.time_mix_conv.weight", "encoder.down.0.block.1.conv1.weight"):
        assert f"first_stage_model.{key}" in original
    theirs = build_vae(original, "svd.safetensors")
    assert theirs.family == "Stable Video Diffusion VAE" and not hasattr(theirs, "quant_conv")
    z = latent(4, 2, 3, seed=5)
    assert torch.equal(decode(theirs, z), decode(ours, z))
    x = torch.rand(1, 3, 2, 16, 24, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():  # no quant_conv: the mean is the encoder's own output
        expected = ref.encoder(x[0].transpose(0, 1))[:, :4]
        got = theirs.encode_chunk(x)[0].transpose(0, 1)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_recognition_is_precise(pair):
    """Exactly one family takes an SVD VAE, in either layout; an image VAE (the same keys but for the time
    layers), in either layout, is the image family's."""
    from diffusers import AutoencoderKL

    ref, _ = pair
    for sd in (ref.state_dict(), to_original(ref.state_dict())):
        assert [f.name for f in FAMILIES if f.recognises(sd)] == ["Stable Video Diffusion VAE"]
    image = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                          up_block_types=("UpDecoderBlock2D",) * 2).state_dict()
    for sd in (image, to_original(image)):
        assert family_of(sd).name.startswith("image VAE")


def test_bad_svd_inputs_get_clear_errors(pair):
    ref, ours = pair
    with pytest.raises(FrameStreamError, match="holds 10 frame latents, which is not a whole number of videos of "
                                               "num_frames=4"):
        decode(ours, latent(10), num_frames=4)
    with pytest.raises(FrameStreamError, match=r"a video latent \[B, C, T, H, W\]; the Stable Video Diffusion VAE "
                                               r"decodes a batch of image latents \[N, 4, H, W\]"):
        decode(ours, torch.randn(1, 4, 5, 2, 2))
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the Stable Video Diffusion VAE expects 4"):
        decode(ours, torch.randn(5, 16, 2, 2))
    sd = dict(ref.state_dict())
    del sd["decoder.up_blocks.1.resnets.2.temporal_res_block.norm2.weight"]
    with pytest.raises(FrameStreamError, match="svd.safetensors looks like a Stable Video Diffusion VAE but does "
                                               "not match"):
        build_vae(sd, "svd.safetensors")


def test_num_frames_splits_a_batch_into_videos(pair):
    """``[B*T, 4, h, w]`` with ``num_frames=T`` is B videos, as diffusers' ``decode(z, num_frames)``."""
    ref, ours = pair
    z = latent(6, seed=7)
    got = decode(ours, z, num_frames=3)
    with torch.no_grad():
        expected = as_frames(ref.decode(z, num_frames=3).sample)
    assert got.shape == expected.shape == (6, 16, 16, 3)
    assert (got - expected).abs().max().item() <= TOL
