"""The streaming loop: sinks, steps, progress and interruption, and input checks."""

import warnings
import weakref

import pytest
import torch

from framestream.vae_core.streaming import engine
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming.sinks import CallbackSink


@pytest.fixture(scope="module")
def vae(wan21_pair):
    return wan21_pair[1]


def latent(t=4, h=2, w=3, seed=0, channels=16, batch=1):
    return torch.randn(batch, channels, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_callback_sink_gets_every_frame_once_in_order(vae):
    z = latent(t=5)
    seen = []
    shape = engine.decode(vae, z, sink=CallbackSink(lambda b, start, chunk: seen.append((b, start, chunk.clone()))),
                          frames_per_step=2)
    assert shape == (1, 17, 16, 24, 3)
    assert [(b, s, c.shape[0]) for b, s, c in seen] == [(0, 0, 5), (0, 5, 8), (0, 13, 4)]
    assert torch.equal(torch.cat([c for _, _, c in seen]), engine.decode(vae, z, frames_per_step=2))


def test_a_step_lets_go_of_its_frames_before_the_next_step_runs(vae, monkeypatch):
    """The plan counts one step's frames in RAM; the loop once kept the last step's alive through the next."""
    handed, alive = [], []
    decode_tile = vae.decode_tile

    def watched(*args, **kwargs):
        alive.append(sum(ref() is not None for ref in handed))
        return decode_tile(*args, **kwargs)

    def keep_nothing(batch, start, chunk):
        handed.append(weakref.ref(chunk if chunk._base is None else chunk._base))

    monkeypatch.setattr(vae, "decode_tile", watched)
    engine.decode(vae, latent(t=4), sink=CallbackSink(keep_nothing), frames_per_step=1)
    assert len(handed) == 4 and len(alive) >= 4 and not any(alive)  # (the plan's probe runs it too)


def test_frame_sink_places_batches_one_after_another(vae):
    z = latent(t=2, batch=2)
    both = engine.decode(vae, z)
    assert both.shape == (10, 16, 24, 3)
    assert torch.equal(both[:5], engine.decode(vae, z[:1]))
    assert torch.equal(both[5:], engine.decode(vae, z[1:]))


def test_four_dimensional_latent_is_one_video(vae):
    z = latent(t=2)
    assert torch.equal(engine.decode(vae, z[0]), engine.decode(vae, z))


def test_single_latent_frame_decodes_to_one_frame(vae):
    assert engine.decode(vae, latent(t=1)).shape == (1, 16, 24, 3)


def test_single_frame_encodes_to_one_latent_frame(vae):
    out = engine.encode(vae, torch.rand(1, 16, 16, 3))
    assert out.shape == (1, 16, 1, 2, 2)


def test_odd_frame_sizes_are_cropped_like_the_host(vae):
    """The host crops to whole latent pixels, centred: offset (size % 8) // 2."""
    frames = torch.rand(5, 21, 35, 3, generator=torch.Generator().manual_seed(1))
    cropped = frames[:, 2:18, 1:33]
    with pytest.warns(UserWarning, match="of 32x16 px out of 5 of 35x21"):
        latent = engine.encode(vae, frames)
    assert torch.equal(latent, engine.encode(vae, cropped))
    assert latent.shape == (1, 16, 2, 2, 4)


def test_trailing_frames_that_do_not_fill_a_latent_frame_are_dropped(vae):
    frames = torch.rand(8, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning, match="encoding 5 frames of 16x16 px out of 8 of 16x16"):
        latent = engine.encode(vae, frames)
    assert torch.equal(latent, engine.encode(vae, frames[:5]))


def test_odd_latent_sizes_decode(vae):
    assert engine.decode(vae, latent(t=2, h=3, w=1)).shape == (5, 24, 8, 3)


def test_alpha_channel_is_ignored(vae):
    frames = torch.rand(1, 16, 16, 4)
    assert torch.equal(engine.encode(vae, frames), engine.encode(vae, frames[..., :3]))


def test_progress_reports_every_step(vae):
    calls = []
    engine.decode(vae, latent(t=5, batch=2), frames_per_step=2, progress=lambda d, t, preview: calls.append((d, t)))
    assert calls == [(0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    calls.clear()
    engine.encode(vae, torch.rand(9, 16, 16, 3), latents_per_step=1,
                  progress=lambda d, t, preview: calls.append((d, t)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_interrupt_stops_within_one_step(vae):
    written = []

    class Stop(Exception):
        pass

    def progress(done, total, preview):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        engine.decode(vae, latent(t=6), sink=CallbackSink(lambda *a: written.append(a[1])), frames_per_step=1,
                      progress=progress)
    assert written == [0, 1]


# --- bad input ---------------------------------------------------------------------------------------------------


def test_wrong_channel_count(vae):
    with pytest.raises(FrameStreamError, match="latent has 4 channels but the Wan 2.1 VAE expects 16"):
        engine.decode(vae, latent(channels=4))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_latent(vae, value):
    z = latent()
    z[0, 3, 1, 0, 0] = value
    with pytest.raises(FrameStreamError, match="1 NaN/inf value;"):
        engine.decode(vae, z)


def test_non_finite_frames(vae):
    frames = torch.rand(5, 16, 16, 3)
    frames[2, 3, 3, 1] = float("nan")
    with pytest.raises(FrameStreamError, match="NaN/inf"):
        engine.encode(vae, frames)


def test_image_latent_shape(vae):
    with pytest.raises(FrameStreamError, match=r"read as images \[B, C, H, W\] it has no time axis"):
        engine.decode(vae, torch.randn(1, 16, 64, 64))
    with pytest.raises(FrameStreamError, match=r"a video latent is \[C, T, H, W\] or \[B, C, T, H, W\]"):
        engine.decode(vae, torch.randn(16, 8, 8))


def test_empty_latent(vae):
    with pytest.raises(FrameStreamError, match="holds no frames"):
        engine.decode(vae, torch.randn(1, 16, 0, 2, 2))


def test_frames_too_small(vae):
    with pytest.raises(FrameStreamError, match="5x5 px; the Wan 2.1 VAE needs at least 8x8"):
        engine.encode(vae, torch.rand(5, 5, 5, 3))


def test_frames_wrong_layout(vae):
    with pytest.raises(FrameStreamError, match=r"expected \[T, H, W, 3\]"):
        engine.encode(vae, torch.rand(5, 3, 16, 16))


def test_bad_step_sizes(vae):
    with pytest.raises(FrameStreamError, match="frames_per_step must be at least 1"):
        engine.decode(vae, latent(), frames_per_step=0)
    with pytest.raises(FrameStreamError, match="latents_per_step must be at least 1"):
        engine.encode(vae, torch.rand(5, 16, 16, 3), latents_per_step=0)


def test_encode_warns_about_the_frames_and_pixels_it_leaves_out(vae):
    with pytest.warns(UserWarning, match=r"encoding 5 frames of 24x16 px out of 7 of 24x18: .* 1 \+ 4k frames"):
        latent = engine.encode(vae, torch.rand(7, 18, 24, 3))
    assert latent.shape[2:] == (2, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out: no warning
        engine.encode(vae, torch.rand(5, 16, 24, 3))
