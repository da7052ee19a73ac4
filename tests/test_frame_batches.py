"""Batches of per-frame latents ([N, C, h, w], the host's image LATENT): one video, or videos of num_frames."""

import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming import engine

from toy_models import PointwiseFramesVAE, PointwiseVAE


@pytest.fixture(scope="module")
def pair():
    """The same weights read as a video VAE and as a per-frame one."""
    video = PointwiseVAE().eval()
    frames = PointwiseFramesVAE().eval()
    frames.load_state_dict(video.state_dict())
    return video, frames


def batch(n=6, seed=0):
    return torch.randn(n, 4, 3, 5, generator=torch.Generator().manual_seed(seed))


def test_a_batch_of_frame_latents_is_one_video(pair):
    video, frames = pair
    z = batch()
    out = engine.decode(frames, z, frames_per_step=4)
    assert out.shape == (6, 12, 20, 3)
    assert torch.equal(out, engine.decode(video, z.transpose(0, 1)[None], frames_per_step=4))


def test_num_frames_splits_the_batch_into_videos(pair):
    _, frames = pair
    z = batch()
    both = engine.decode(frames, z, num_frames=3)
    assert torch.equal(both[:3], engine.decode(frames, z[:3])) and torch.equal(both[3:], engine.decode(frames, z[3:]))
    assert not torch.equal(both, engine.decode(frames, z))  # the second video's carries start afresh


def test_encode_returns_the_hosts_image_latent_batch(pair):
    video, frames = pair
    clip = torch.rand(5, 12, 20, 3, generator=torch.Generator().manual_seed(1))
    latent = engine.encode(frames, clip)
    assert latent.shape == (5, 4, 3, 5) and latent.is_contiguous()
    assert torch.equal(latent, engine.encode(video, clip)[0].transpose(0, 1))
    assert torch.allclose(engine.decode(frames, latent), engine.decode(video, latent.transpose(0, 1)[None]))


def test_a_video_latent_for_a_frame_batch_vae_is_refused(pair):
    with pytest.raises(FrameStreamError, match=r"latent has shape \(1, 4, 6, 3, 5\), a video latent \[B, C, T, H, W\]; "
                                               r"the pointwise per-frame test VAE decodes a batch of image latents "
                                               r"\[N, 4, H, W\], one per frame"):
        engine.decode(pair[1], torch.randn(1, 4, 6, 3, 5))


@pytest.mark.parametrize("n, num_frames", [(7, 3), (6, 0), (6, 12)])
def test_a_frame_count_that_disagrees_with_num_frames_is_refused(pair, n, num_frames):
    with pytest.raises(FrameStreamError, match=rf"the latent holds {n} frame latents, which is not a whole number of "
                                               rf"videos of num_frames={num_frames} frames"):
        engine.decode(pair[1], batch(n), num_frames=num_frames)


def test_num_frames_is_only_for_frame_batches(pair):
    with pytest.raises(FrameStreamError, match="num_frames is for batches of per-frame latents"):
        engine.decode(pair[0], torch.randn(1, 4, 6, 3, 5), num_frames=6)


def test_wrong_channels_in_a_frame_batch(pair):
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the pointwise per-frame test VAE expects 4"):
        engine.decode(pair[1], torch.randn(6, 16, 3, 5))


def test_an_image_batch_for_a_video_vae_is_named(pair):
    """[N, C, h, w] with the video VAE's channel count is an image latent; [C', T, h, w] is a channel mismatch."""
    with pytest.raises(FrameStreamError, match=r"read as images \[B, C, H, W\] it has no time axis"):
        engine.decode(pair[0], torch.randn(6, 4, 3, 5))
    with pytest.raises(FrameStreamError, match="latent has 16 channels but the pointwise test VAE expects 4"):
        engine.decode(pair[0], torch.randn(16, 6, 3, 5))
