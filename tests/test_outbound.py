"""Frames leaving the device: on a GPU a step's frames are handed to the sink after the next step is queued
(outbound.py). The hand-over order is the engine's own logic, so it is checked here on the CPU with the
deferral switched on; the CUDA copy itself (pinned buffers, a side stream) only where a GPU is."""

import pytest
import torch

from framestream.vae_core import DecodeStream, build_vae
from framestream.vae_core.streaming import engine, outbound, stream
from framestream.vae_core.streaming.sinks import CallbackSink
from oracle import LTX_SMALL, diffusers_ltx, diffusers_svd


class Deferred(outbound.Outbound):
    """The CPU's outbound with a GPU's hand-over: each step's frames wait until the next step has run."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.deferred = True


def _latent(channels: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, channels, frames, 2, 2, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ltx():  # a delayed decoder: its flush steps are decided from the frames already out
    return build_vae(diffusers_ltx(LTX_SMALL).state_dict())


@pytest.fixture(scope="module")
def svd():  # cross-faded windows: the stitcher reads a window's frames as it places them
    return build_vae(diffusers_svd().state_dict())


def _decode_recording(vae, z, **settings):
    """The frames and, for each sink write, how many steps had run by then."""
    writes, streams = [], []
    original = stream.DecodeStream.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        streams.append(self)

    chunks = []

    def write(batch, start, chunk):
        writes.append((start, chunk.shape[0], streams[-1].steps))
        chunks.append(chunk.clone())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream.DecodeStream, "__init__", remember)
        engine.decode(vae, z, sink=CallbackSink(write), **settings)
    return torch.cat(chunks), writes


@pytest.mark.parametrize("model", ["wan", "ltx", "svd"])
def test_deferred_hand_over_gives_the_same_frames_one_step_later(model, wan21_pair, ltx, svd, monkeypatch):
    vae, z, settings = {
        "wan": (wan21_pair[1], _latent(16, 5), dict(frames_per_step=1)),
        "ltx": (ltx, _latent(128, 6, seed=1), dict(frames_per_step=1)),
        # longer than one window (25 frames each side of a core of 25): four windows
        "svd": (svd, torch.randn(80, 4, 2, 2, generator=torch.Generator().manual_seed(2)), dict(statistics_passes=0)),
    }[model]
    at_once, written_at_once = _decode_recording(vae, z, **settings)
    monkeypatch.setattr(stream, "Outbound", Deferred)
    deferred, written_deferred = _decode_recording(vae, z, **settings)
    assert torch.equal(deferred, at_once)
    assert [w[:2] for w in written_deferred] == [w[:2] for w in written_at_once]  # the same pieces, in order
    steps = written_at_once[-1][2]
    assert steps >= 2
    # each piece but the last goes out once the step after its own has run; the last at the end of the decode
    assert [w[2] for w in written_deferred[:-1]] == [w[2] + 1 for w in written_at_once[:-1]]
    assert written_deferred[-1][2] == steps


def test_a_push_returns_its_frames_although_the_hand_over_waits_a_step(wan21_pair, monkeypatch):
    """A live stream's frames leave as each push ends, not a push later."""
    vae = wan21_pair[1]
    z = _latent(16, 4, seed=3)
    expected = engine.decode(vae, z, frames_per_step=1)
    monkeypatch.setattr(stream, "Outbound", Deferred)
    live = DecodeStream(vae, frames_per_step=1)
    first = live.push(z[:, :, :1])
    assert first.shape[0] == 1 and torch.equal(first, expected[:1])
    rest = [live.push(z[:, :, i : i + 1]) for i in range(1, 3)] + [live.push(z[:, :, 3:], last=True), live.flush()]
    assert torch.equal(torch.cat([first, *rest]), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_frames_leave_a_cuda_device_through_pinned_memory():
    out = outbound.Outbound(torch.device("cuda"))
    frames = torch.rand(3, 4, 5, 6, device="cuda").permute(1, 2, 3, 0)  # [t, H, W, 3] as a step's are laid out
    arriving = out.send(frames)
    host = arriving.wait()
    assert out.deferred and host.is_pinned() and host.stride() == frames.stride()
    assert torch.equal(host, frames.cpu())
