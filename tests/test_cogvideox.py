"""The CogVideoX VAE against diffusers' AutoencoderKLCogVideoX with shared random weights (reduced widths)."""

import pytest
import torch

from framestream.vae_core.streaming import engine
from framestream.vae_core.models.cogvideox.checkpoints import build_cogvideox, is_cogvideox, original_to_diffusers
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming.state import StreamState

from oracle import cogvideox_to_original, diffusers_cogvideox

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny convs: two threads on two busy cores spin 20x slower


@pytest.fixture(scope="module")
def pair():
    ref = diffusers_cogvideox()
    return ref, build_cogvideox(ref.state_dict())


def frames_of(pixels):
    return ((pixels + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def stepped_decode(model, z):
    """The model's own steps, by hand and unclamped: the whole-clip output whatever the engine's frame spans."""
    state, out = StreamState(), []
    with torch.no_grad(), state.active():
        for start, stop in model.decode_steps(z.shape[2], 1):
            out.append(model.decode_chunk(z[:, :, start:stop]))
            state.carries.commit()
    return torch.cat(out, dim=2)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 7])
def test_stepped_decode_matches_diffusers(pair, length):
    """diffusers' two-frame batches, odd first batch included; even lengths give 4n frames there."""
    ref, ours = pair
    z = torch.randn(1, 16, length, 2, 2, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = ref.decode(z).sample
    got = stepped_decode(ours, z)
    assert got.shape == expected.shape
    assert got.shape[2] == ours.decoded_frames(length)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


@pytest.mark.parametrize("length", [1, 3, 5])
def test_engine_decode_matches_diffusers(pair, length):
    ref, ours = pair
    z = torch.randn(1, 16, length, 2, 3, generator=torch.Generator().manual_seed(10 + length))
    with torch.no_grad():
        expected = frames_of(ref.decode(z).sample)
    got = engine.decode(ours, z, frames_per_step=4)  # the model keeps diffusers' steps whatever is asked
    assert got.shape == expected.shape == (1 + 4 * (length - 1), 16, 24, 3)
    assert (got - expected).abs().max().item() <= TOL


def test_engine_decode_of_an_even_length(pair):
    """diffusers decodes an even latent length to 4n frames (its first step has two latent frames); the engine
    places frames by 1 + 4(n - 1) until temporal.pixel_span asks the model (see the model's decoded_frames)."""
    ref, ours = pair
    z = torch.randn(1, 16, 4, 2, 2, generator=torch.Generator().manual_seed(20))
    with torch.no_grad():
        expected = frames_of(ref.decode(z).sample)
    got = engine.decode(ours, z)
    assert got.shape == expected.shape == (16, 16, 16, 3)
    assert (got - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("count", [1, 5, 9, 21])
def test_streamed_encode_matches_diffusers(pair, count):
    """diffusers' eight-frame batches, the first taking the rest over (21 frames: 13, then 8)."""
    ref, ours = pair
    frames = torch.rand(count, 16, 24, 3, generator=torch.Generator().manual_seed(count))
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    got = engine.encode(ours, frames)
    assert got.shape == expected.shape == (1, 16, 1 + (count - 1) // 4, 2, 3)
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()


def test_tiles_stay_close_to_the_whole_frame(pair):
    """Tiles start at the first upsampling and share each step's norm statistics, gathered norm by norm; their
    zero-padded edges reach into the overlap, so only a bound is asserted (the figures are in the report), and
    that they are closer than with one pass's estimate of the statistics."""
    _, ours = pair
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    whole = engine.decode(ours, z)
    errors = [(engine.decode(ours, z, tile=24, overlap=o) - whole).abs() for o in (8, 16)]
    for error in errors:
        assert 0 < error.mean().item() < 0.05
    estimated = (engine.decode(ours, z, tile=24, overlap=8, statistics_passes=1) - whole).abs()
    assert errors[0].mean().item() < estimated.mean().item()
    assert torch.equal(engine.decode(ours, z, tile=32, overlap=0), whole)


def test_both_layouts_load_and_agree():
    ref = diffusers_cogvideox(seed=3)
    sd = ref.state_dict()
    original = cogvideox_to_original(sd)
    assert "decoder.up.3.block.0.norm1.norm_layer.weight" in original  # the SAT names
    assert "decoder.mid.block_1.conv1.conv.weight" in original and "encoder.down.0.downsample.conv.weight" in original
    renamed = original_to_diffusers(original)
    assert set(renamed) == set(sd) and all(renamed[k] is sd[k] for k in sd)
    assert is_cogvideox(sd) and is_cogvideox(original)
    a, b = build_cogvideox(sd), build_cogvideox(original)
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(6))
    assert torch.equal(stepped_decode(a, z), stepped_decode(b, z))


def test_hunyuan_video_is_not_taken_for_cogvideox():
    from diffusers import AutoencoderKLHunyuanVideo

    hunyuan = AutoencoderKLHunyuanVideo(block_out_channels=(32, 32, 32, 32), layers_per_block=1)
    sd = hunyuan.state_dict()
    assert "decoder.up_blocks.0.resnets.0.conv1.conv.weight" in sd  # the key the two families share
    assert not is_cogvideox(sd)


def test_bad_inputs_get_clear_errors(pair):
    _, ours = pair
    with pytest.raises(FrameStreamError, match="latent has 128 channels but the CogVideoX VAE expects 16"):
        engine.decode(ours, torch.randn(1, 128, 2, 2, 2))
    sd = dict(diffusers_cogvideox(seed=4).state_dict())
    del sd["decoder.up_blocks.1.resnets.0.norm2.conv_y.conv.weight"]
    with pytest.raises(FrameStreamError, match="does not match its architecture .*conv_y"):
        build_cogvideox(sd, "cog.safetensors")
    with pytest.raises(FrameStreamError, match="cog.safetensors looks like a CogVideoX VAE but is incomplete"):
        build_cogvideox({k: v for k, v in sd.items() if not k.startswith("encoder.conv_in")}, "cog.safetensors")
