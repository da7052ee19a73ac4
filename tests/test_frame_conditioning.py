"""Batched first-last-frame and extension conditioning, and stitching decoded segments, on the trained fixture VAE.

The host-side check (the same tensors as the host's WanFirstLastFrameToVideo)
is in test_host_comfyui.py; here each segment is checked against an explicit
encode of the clip it stands for.
"""

import pytest
import torch
import torch.nn.functional as F

from framestream.vae_core.streaming import engine
from framestream.vae_core.demo import fixture_vae, moving_shapes
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.sampling.frame_conditioning import (GREY, denormalise, extension, fit_images, interpolation, join,
                                                     known_mask, normalise)
from framestream.vae_core.streaming.sinks import FrameSink
from framestream.vae_core.streaming.stitch import StitchSink

SIZE = 32


@pytest.fixture(scope="module")
def vae():
    return fixture_vae()


def encoder(vae):
    return lambda chunks, count: engine.encode(vae, chunks, frame_count=count)


def keyframes(count, height=SIZE, width=SIZE):
    return moving_shapes(count * 4, height, width, seed=1)[::4]


def test_each_segment_is_the_encode_of_grey_between_its_two_keyframes(vae):
    keys = keyframes(3)
    got = interpolation(keys, 9, SIZE, SIZE, encoder(vae))
    assert got.concat_latent.shape == (2, 16, 3, SIZE // 8, SIZE // 8)
    for i in range(2):
        clip = torch.full((9, SIZE, SIZE, 3), GREY)
        clip[0], clip[-1] = keys[i], keys[i + 1]
        assert torch.equal(got.concat_latent[i : i + 1], engine.encode(vae, clip))
    assert torch.equal(got.free_latent, engine.encode(vae, torch.full((9, SIZE, SIZE, 3), GREY)))
    assert torch.equal(got.free_mask, torch.ones(1, 4, 3, SIZE // 8, SIZE // 8))


def test_the_mask_marks_the_first_latent_frame_and_the_last_pixel_frame_known():
    mask = known_mask(3, 2, 2, first_pixels=1, last_pixels=1)
    assert mask.shape == (1, 4, 3, 2, 2)
    expected = torch.ones(4, 3)
    expected[:, 0] = 0  # the first latent frame covers pixel frame 0 only; all four channels known
    expected[3, 2] = 0  # the last latent frame covers pixel frames 5..8; only the last one is known
    assert torch.equal(mask[0, :, :, 0, 0], expected)
    extended = known_mask(4, 1, 1, first_pixels=5)  # two whole latent frames known
    assert torch.equal(extended[0, :, :, 0, 0], torch.tensor([[0.0, 0, 1, 1]] * 4))


def test_keyframes_are_cropped_to_the_target_aspect_then_resized_bilinearly():
    images = torch.rand(2, 20, 40, 3)
    got = fit_images(images, 16, 16)  # 2:1 to 1:1: 10 px cropped from each side
    expected = F.interpolate(images[:, :, 10:30].movedim(-1, 1), size=(16, 16), mode="bilinear").movedim(1, -1)
    assert torch.equal(got, expected)
    assert torch.equal(fit_images(images, 40, 20), images)


def test_perturbation_noises_only_the_known_frames_in_the_models_normalised_space(vae):
    keys = keyframes(3)
    clean = interpolation(keys, 9, SIZE, SIZE, encoder(vae))
    noisy = interpolation(keys, 9, SIZE, SIZE, encoder(vae), perturbation=0.5, seed=7)
    assert torch.equal(noisy.concat_latent[:, :, 1], clean.concat_latent[:, :, 1])  # the unknown middle frame
    # (1 - sigma) z + sigma eps in normalised space: eps recovered has unit statistics and differs per segment
    eps = (normalise(noisy.concat_latent) - 0.5 * normalise(clean.concat_latent)) / 0.5
    known = eps[:, :, [0, -1]]
    assert abs(known.mean().item()) < 0.1 and abs(known.std().item() - 1.0) < 0.1
    assert not torch.allclose(known[0], known[1])
    again = interpolation(keys, 9, SIZE, SIZE, encoder(vae), perturbation=0.5, seed=7)
    assert torch.equal(again.concat_latent, noisy.concat_latent)
    wrapped = interpolation(keys, 9, SIZE, SIZE, encoder(vae), perturbation=0.5, seed=2**64 - 1)  # no overflow
    assert torch.equal(wrapped.concat_latent[1], interpolation(keys[1:], 9, SIZE, SIZE, encoder(vae), 0.5, 0).concat_latent[0])
    z = torch.randn(1, 16, 2, 3, 3)
    assert torch.allclose(denormalise(normalise(z)), z, atol=1e-5)


def test_extension_hands_the_clip_tail_over_as_latents(vae):
    previous = engine.encode(vae, moving_shapes(9, SIZE, SIZE))  # 3 latent frames
    got = extension(previous, 2, 13, encoder(vae), SIZE, SIZE)
    assert torch.equal(got.concat_latent[:, :, :2], previous[:, :, -2:])
    assert torch.equal(got.concat_latent[:, :, 2:], got.free_latent[:, :, 2:])
    assert torch.equal(got.mask[0, :, :, 0, 0], torch.tensor([[0.0, 0, 1, 1]] * 4))
    continuation = torch.randn(1, 16, 4, SIZE // 8, SIZE // 8)
    joined = join(previous, continuation, 2)
    assert torch.equal(joined, torch.cat([previous, continuation[:, :, 2:]], dim=2))


@pytest.mark.parametrize("call, message", [
    (lambda v: interpolation(keyframes(1), 9, SIZE, SIZE, encoder(v)), "at least 2 keyframes, got 1"),
    (lambda v: interpolation(keyframes(3), 8, SIZE, SIZE, encoder(v)), "4k \\+ 1 pixel frames .* got 8"),
    (lambda v: interpolation(torch.rand(3, SIZE, SIZE), 9, SIZE, SIZE, encoder(v)), "expected an IMAGE batch"),
    (lambda v: extension(torch.zeros(1, 16, 3, 4, 4), 0, 9, encoder(v), SIZE, SIZE), "context_frames is 0"),
    (lambda v: extension(torch.zeros(1, 16, 3, 4, 4), 3, 9, encoder(v), SIZE, SIZE), "fewer than the new clip's 3"),
    (lambda v: extension(torch.zeros(1, 16, 3, 4, 4), 1, 10, encoder(v), SIZE, SIZE), "4k \\+ 1"),
    (lambda v: extension(torch.zeros(1, 16, 3, 2, 2), 1, 9, encoder(v), SIZE, SIZE), "use the clip's own size"),
    (lambda v: join(torch.zeros(1, 16, 3, 4, 4), torch.zeros(1, 16, 3, 2, 2), 1), "cannot join latents"),
])
def test_bad_conditioning_input_is_refused(vae, call, message):
    with pytest.raises(FrameStreamError, match=message):
        call(vae)


def test_a_wan22_vae_is_refused_for_image_conditioning(wan22_pair):
    with pytest.raises(FrameStreamError, match="48-channel latents; .* Wan 2.1 VAE latents \\(16"):
        interpolation(keyframes(2), 5, SIZE, SIZE, encoder(wan22_pair[1]))


def segments_of(values, frames=5, size=2):
    return torch.stack([torch.full((frames, size, size, 3), float(v)) for v in values])


@pytest.mark.parametrize("chunk", [1, 2, 5])
@pytest.mark.parametrize("overlap, crossfade", [(0, False), (1, False), (1, True), (2, True)])
def test_stitched_segments_keep_every_frame_once_in_order(chunk, overlap, crossfade):
    segments = segments_of([0.0, 0.3, 0.9]) + torch.arange(5).view(1, 5, 1, 1, 1) * 0.01
    sink = StitchSink(FrameSink(), overlap, crossfade)
    sink.start(tuple(segments.shape))
    for index, segment in enumerate(segments):
        for start in range(0, 5, chunk):
            sink.write(index, start, segment[start : start + chunk])
    got = sink.result()
    expected = [segments[0]]
    for earlier, later in zip(segments, segments[1:]):
        if overlap:
            weight = torch.arange(1, overlap + 1).view(-1, 1, 1, 1) / (overlap + 1) if crossfade else 0.0
            expected[-1] = expected[-1][:-overlap]
            expected.append(earlier[-overlap:] * (1 - weight) + later[:overlap] * weight)
        expected.append(later[overlap:])
    assert got.shape[0] == 3 * (5 - overlap) + overlap
    assert torch.allclose(got, torch.cat(expected), atol=1e-6)


def test_a_batch_of_segments_decodes_each_with_a_fresh_cache_and_drops_the_shared_frame(vae):
    latents = torch.randn(2, 16, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    got = engine.decode(vae, latents, sink=StitchSink(FrameSink(), 1))
    first, second = (engine.decode(vae, latents[i : i + 1]) for i in range(2))
    assert torch.equal(got, torch.cat([first, second[1:]]))


def test_an_overlap_longer_than_half_a_segment_is_refused():
    with pytest.raises(FrameStreamError, match="overlap is 3 frames; with 5-frame segments it must be 0 to 2"):
        StitchSink(FrameSink(), 3).start((2, 5, 2, 2, 3))
