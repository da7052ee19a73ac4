"""DecodeStream and EncodeStream: however a clip is cut into pushes, the frames (latents) are one call's.

Every family whose definition allows streaming is pushed random splits of a latent and compared with
diffusers' one-call decode of the same weights and with ``engine.decode``; the families that pool statistics
over the whole clip refuse pieces, with a message, unless running statistics are asked for.
"""

from __future__ import annotations

import pytest
import torch

from framestream.vae_core import DecodeStream, EncodeStream, build_vae
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.io.video_reader import EIGHT_BIT, read_video
from framestream.vae_core.streaming import engine
from framestream.vae_core.streaming.sinks import FrameSink
from oracle import (LTX_SMALL, SD, SMALL_20, WAN22_SMALL, diffusers_cogvideox, diffusers_decode_raw,
                    diffusers_hunyuan, diffusers_hv15, diffusers_kl, diffusers_ltx, diffusers_ltx2, diffusers_mochi,
                    diffusers_svd, diffusers_wan, tae)

TOL = 1e-4


def random_split(length: int, seed: int, most: int = 3) -> list[int]:
    """Piece sizes (1 to ``most`` frames) that add up to ``length``."""
    gen = torch.Generator().manual_seed(seed)
    sizes = []
    while sum(sizes) < length:
        sizes.append(min(int(torch.randint(1, most + 1, (1,), generator=gen)), length - sum(sizes)))
    return sizes


def pushed(stream, whole: torch.Tensor, sizes: list[int], dim: int = 2) -> torch.Tensor:
    """Everything the stream gives for ``whole`` pushed in pieces of ``sizes`` along ``dim``, then flushed: frames
    joined along their first dim, latents (an encode) along time."""
    out, start = [], 0
    for size in sizes:
        out.append(stream.push(whole.narrow(dim, start, size)))
        start += size
    out.append(stream.flush())
    return torch.cat([o for o in out if o.numel()], dim=2 if isinstance(stream, EncodeStream) else 0)


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """diffusers' ``[1, 3, T, H, W]`` in [-1, 1] as ``[T, H, W, 3]`` in [0, 1]."""
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_step", [1, 2])
def test_a_wan_stream_cut_anywhere_decodes_as_diffusers_one_call(wan21_pair, seed, per_step):
    ref, ours = wan21_pair
    z = torch.randn(1, 16, 7, 3, 4, generator=torch.Generator().manual_seed(seed))
    frames = pushed(DecodeStream(ours, frames_per_step=per_step), z, random_split(7, seed))
    assert frames.shape == (25, 24, 32, 3)
    assert (frames - frames_of(diffusers_decode_raw(ref, z))).abs().max().item() <= TOL
    assert (frames - engine.decode(ours, z)).abs().max().item() <= TOL


def test_a_causal_decoder_gives_the_first_frame_on_the_first_push(wan21_pair):
    _, ours = wan21_pair
    z = torch.randn(1, 16, 3, 2, 2)
    stream = DecodeStream(ours)
    assert stream.push(z[:, :, :1]).shape == (1, 16, 16, 3)
    assert stream.push(z[:, :, 1:3]).shape == (8, 16, 16, 3)
    assert stream.flush().numel() == 0


def test_the_length_given_up_front_plans_exactly_and_steps_as_decode_does(wan21_pair):
    _, ours = wan21_pair
    z = torch.randn(1, 16, 5, 2, 2)
    stream = DecodeStream(ours, frames=5, frames_per_step=2)
    out = [stream.push(z[:, :, :1]), stream.push(z[:, :, 1:4]), stream.push(z[:, :, 4:])]
    assert [o.shape[0] for o in out] == [0, 13, 4]  # steps of two latent frames, [0, 2) once both are here
    assert stream.work.steps[-1].stop == 5 and stream.steps == 3
    assert torch.equal(torch.cat(out + [stream.flush()]), engine.decode(ours, z, frames_per_step=2))


@pytest.mark.parametrize("seed", [0, 1])
def test_an_encode_stream_cut_anywhere_encodes_as_one_call(wan21_pair, seed):
    ref, ours = wan21_pair
    frames = torch.rand(17, 16, 24, 3, generator=torch.Generator().manual_seed(seed))
    latent = pushed(EncodeStream(ours), frames, random_split(17, seed, most=6), dim=0)
    assert latent.shape == (1, 16, 5, 2, 3)
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    assert (latent - expected).abs().max().item() <= TOL
    assert (latent - engine.encode(ours, frames)).abs().max().item() <= TOL


def test_an_encode_stream_leaves_out_what_does_not_fill_a_latent_frame(wan21_pair):
    _, ours = wan21_pair
    frames = torch.rand(11, 16, 16, 3)
    stream = EncodeStream(ours)
    first = stream.push(frames[:7])
    with pytest.warns(UserWarning, match="encoding 9 frames of 16x16 px out of 11"):
        rest = stream.push(frames[7:], last=True)
    assert torch.equal(torch.cat([first, rest], dim=2), engine.encode(ours, frames[:9]))


def test_rewind_decodes_a_changed_piece_again(wan21_pair):
    """An autoregressive model revises a block: rewind to before it and push the new one."""
    _, ours = wan21_pair
    gen = torch.Generator().manual_seed(5)
    z, draft = torch.randn(1, 16, 6, 2, 2, generator=gen), torch.randn(1, 16, 2, 2, 2, generator=gen)
    sink = FrameSink()
    stream = DecodeStream(ours, sink=sink)
    kept = stream.push(z[:, :, :3])
    mark = stream.mark()
    stream.push(draft)
    stream.rewind(mark)
    rest = [stream.push(z[:, :, 3:5]), stream.push(z[:, :, 5:])]
    again = stream.mark()
    stream.rewind(again)  # a mark can be rewound to at once
    expected = engine.decode(ours, z)
    assert stream.flush().numel() == 0
    assert (torch.cat([kept, *rest]) - expected).abs().max().item() <= TOL
    assert (sink.result() - expected).abs().max().item() <= TOL  # the draft's frames in the sink were overwritten


def test_a_stream_writes_a_video_file_of_unknown_length(wan21_pair, tmp_path):
    _, ours = wan21_pair
    z = torch.randn(1, 16, 5, 2, 3)
    with DecodeStream(ours, sink=VideoFileSink(tmp_path / "clip.mp4", 16, lossless=True)) as stream:
        for i in range(5):
            stream.push(z[:, :, i : i + 1])
        mark = stream.mark()
        stream.push(z[:, :, :1])
        with pytest.raises(FrameStreamError, match="4 frames went into the VideoFileSink since the mark"):
            stream.rewind(mark)
    with pytest.raises(FrameStreamError, match="closed"):  # the context manager flushed and closed it
        stream.push(z[:, :, :1])
    written = torch.cat(list(read_video(tmp_path / "clip.mp4", reading=EIGHT_BIT)))
    expected = engine.decode(ours, torch.cat([z, z[:, :, :1]], dim=2))
    assert written.shape == expected.shape == (21, 16, 24, 3)
    assert (written - expected).abs().max().item() <= 0.5 / 255 + TOL


def test_a_failed_push_deletes_the_partial_file(wan21_pair, tmp_path):
    _, ours = wan21_pair

    def stop(done, total, preview):
        if done == 2:
            raise KeyboardInterrupt

    stream = DecodeStream(ours, sink=VideoFileSink(tmp_path / "clip.mp4", 16), progress=stop, frames_per_step=1)
    with pytest.raises(KeyboardInterrupt):
        stream.push(torch.randn(1, 16, 4, 2, 2))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FrameStreamError, match=r"push\(\) on a closed decode stream"):
        stream.push(torch.randn(1, 16, 1, 2, 2))


def test_bad_pushes_get_one_clear_message(wan21_pair, wan22_pair):
    _, ours = wan21_pair
    stream = DecodeStream(ours)
    stream.push(torch.randn(1, 16, 2, 2, 3))
    for piece, message in [
        (torch.randn(1, 48, 1, 2, 3), "latent has 48 channels but the Wan 2.1 VAE expects 16"),
        (torch.randn(1, 16, 1, 2, 4), "a pushed latent is 4x2 latent pixels but the stream's first was 3x2"),
        (torch.randn(16, 1, 2, 3), r"a pushed latent has shape \(16, 1, 2, 3\); a stream of the Wan 2.1 VAE takes"),
        (torch.randn(2, 16, 1, 2, 3), "a pushed latent holds 2 videos; a stream decodes one"),
    ]:
        with pytest.raises(FrameStreamError, match=message):
            stream.push(piece)
    with pytest.raises(FrameStreamError, match="this mark belongs to another stream"):
        stream.rewind(DecodeStream(ours).mark())
    stream.flush()
    with pytest.raises(FrameStreamError, match=r"push\(\) on a closed decode stream \(it was flushed or closed\)"):
        stream.push(torch.randn(1, 16, 1, 2, 3))
    with pytest.raises(FrameStreamError, match="nothing was pushed"):
        DecodeStream(ours).flush()
    with pytest.raises(FrameStreamError, match="6 latent frames pushed to a stream opened for frames=5"):
        DecodeStream(ours, frames=5).push(torch.randn(1, 16, 6, 2, 2))
    short = DecodeStream(ours, frames=5)
    short.push(torch.randn(1, 16, 3, 2, 2))
    with pytest.raises(FrameStreamError, match="opened for frames=5 but 3 latent frames were pushed"):
        short.flush()


# --- every family: (our model, a latent, diffusers' one-call frames of it) --------------------------------------


def _diffusers_frames(ref, z, **options):
    with torch.no_grad():
        return frames_of(ref.decode(z, **options).sample)


def _wan22():
    ref = diffusers_wan(WAN22_SMALL, seed=1)
    z = torch.randn(1, 48, 5, 2, 2, generator=torch.Generator().manual_seed(11))
    return build_vae(ref.state_dict()), z, frames_of(diffusers_decode_raw(ref, z))


def _hunyuan15():  # a causal attention over frames: its keys and values grow with the stream
    ref = diffusers_hv15()
    z = torch.randn(1, 32, 5, 1, 1, generator=torch.Generator().manual_seed(12))
    return build_vae(ref.state_dict()), z, _diffusers_frames(ref, z)


def _ltx2_release():  # looks ahead through its convs: streams with a delay, flushed at the end
    ref = diffusers_ltx2(SMALL_20)
    z = torch.randn(1, 128, 6, 2, 2, generator=torch.Generator().manual_seed(13))
    return build_vae(ref.state_dict()), z, _diffusers_frames(ref, z)


def _ltx2_causal():
    ref = diffusers_ltx2(SMALL_20)
    z = torch.randn(1, 128, 5, 2, 2, generator=torch.Generator().manual_seed(14))
    return build_vae(ref.state_dict()).decode_causally(True), z, _diffusers_frames(ref, z, causal=True)


def _ltx_video():  # LTX-Video 0.9: delayed too, with replicated time padding
    ref = diffusers_ltx(LTX_SMALL)
    z = torch.randn(1, 128, 6, 2, 2, generator=torch.Generator().manual_seed(15))
    return build_vae(ref.state_dict()), z, _diffusers_frames(ref, z)


def _mochi():  # attention over each position's frames, growing; 6 frames a latent frame
    ref = diffusers_mochi()
    z = torch.randn(1, 12, 5, 2, 3, generator=torch.Generator().manual_seed(16))
    return build_vae(ref.state_dict()), z, _diffusers_frames(ref, z)


def _image_frames():  # per-frame latents [N, C, h, w]: every frame alone
    ref = diffusers_kl(SD)
    z = torch.randn(7, 4, 2, 3, generator=torch.Generator().manual_seed(17))
    with torch.no_grad():
        expected = ((ref.decode(z).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    return build_vae(ref.state_dict()), z, expected  # SD's latent as the host holds it: the VAE's own


FAMILIES = {"Wan 2.2": _wan22, "HunyuanVideo 1.5": _hunyuan15, "LTX-2 release": _ltx2_release,
            "LTX-2 causal": _ltx2_causal, "LTX-Video 0.9": _ltx_video, "Mochi": _mochi, "image VAE": _image_frames}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param, *FAMILIES[request.param]()


@pytest.mark.parametrize("seed", [0, 1])
def test_every_streaming_family_cut_anywhere_decodes_as_diffusers_one_call(family, seed):
    name, ours, z, expected = family
    frames_dim = 0 if ours.latent_layout == "frames" else 2
    length = z.shape[frames_dim]
    frames = pushed(DecodeStream(ours), z, random_split(length, seed), dim=frames_dim)
    assert frames.shape == expected.shape, name
    assert (frames - expected).abs().max().item() <= TOL, name
    whole = engine.decode(ours, z)
    assert (frames - whole).abs().max().item() <= TOL, name


def test_cogvideox_streams_given_its_length():
    """CogVideoX decodes in diffusers' frame batches, the first taking the odd frame over: a stream needs the
    clip's length up front (or the whole clip at once)."""
    ref = diffusers_cogvideox()
    ours = build_vae(ref.state_dict())
    z = torch.randn(1, 16, 5, 2, 2, generator=torch.Generator().manual_seed(18))
    frames = pushed(DecodeStream(ours, frames=5), z, [1, 3, 1])
    assert (frames - _diffusers_frames(ref, z)).abs().max().item() <= TOL
    with pytest.raises(FrameStreamError, match="the CogVideoX VAE cuts a clip into steps by its length: open the "
                                               "stream with frames="):
        DecodeStream(ours).push(z[:, :, :2])
    with pytest.raises(FrameStreamError, match="cuts a clip into steps by its length"):
        EncodeStream(ours).push(torch.rand(5, 16, 16, 3))


def test_clip_wide_statistics_refuse_pieces_unless_running_statistics_are_asked_for():
    """HunyuanVideo's GroupNorms pool over the whole clip: a piece cannot be decoded before the clip is complete.
    The whole clip in one push gathers the statistics first, as decode() does; running statistics stream."""
    ref = diffusers_hunyuan()
    ours = build_vae(ref.state_dict())
    z = torch.randn(1, 16, 4, 2, 2, generator=torch.Generator().manual_seed(19))
    with pytest.raises(FrameStreamError, match="the HunyuanVideo VAE's GroupNorms take their statistics over the "
                                               "whole clip, so no piece can be decoded before the clip is complete"):
        DecodeStream(ours).push(z[:, :, :2])
    whole = DecodeStream(ours)
    assert torch.equal(torch.cat([whole.push(z, last=True), whole.flush()]), engine.decode(ours, z))
    running = pushed(DecodeStream(ours, statistics_passes=0), z, [1, 2, 1])
    steps = engine.decode(ours, z, statistics_passes=0, frames_per_step=1)  # (a clip in one step needs no pass)
    assert (running - steps).abs().max().item() <= TOL


@pytest.mark.parametrize("name", ["taehv", "taeltx_2"])
def test_a_tiny_decoder_streams_given_its_length(name):
    """TAEHV decoders drop and pad frames at the clip's ends: a stream needs the length up front."""
    ours = tae(name)
    z = torch.randn(1, ours.latent_channels, 5, 2, 2, generator=torch.Generator().manual_seed(20))
    frames = pushed(DecodeStream(ours, frames=5), z, random_split(5, 3))
    assert (frames - engine.decode(ours, z)).abs().max().item() <= TOL
    with pytest.raises(FrameStreamError, match="cuts a clip into steps by its length"):
        DecodeStream(ours).push(z[:, :, :1])


def test_a_windowed_decoder_streams_its_windows_as_their_context_arrives():
    """Stable Video Diffusion decodes overlapping windows of 25 latent frames with 25 of context each side (its
    temporal layers reach far): pushed in pieces with running statistics, a window goes out once its context is
    here (and the clip is longer than one window, 75 frames, can be), and the frames are those of decode()'s
    windows."""
    ours = build_vae(diffusers_svd().state_dict())
    z = torch.randn(80, 4, 2, 2, generator=torch.Generator().manual_seed(21))  # one video's per-frame latents
    stream = DecodeStream(ours, statistics_passes=0)
    out = [stream.push(z[i : i + 5]) for i in range(0, 80, 5)]
    given = [o.shape[0] for o in out]
    # a window once its 25, its 25 of context, 4 more for the whole-frame stages and one that shows another window
    # follows are here (55 frames), and once the clip is longer than one window (76): the first two at 80 frames;
    # the rest at flush()
    assert given.index(50) == 80 // 5 - 1 and sum(given) == 50
    out.append(stream.flush())
    expected = engine.decode(ours, z, statistics_passes=0)
    assert (torch.cat([o for o in out if o.numel()]) - expected).abs().max().item() <= TOL
    with pytest.raises(FrameStreamError, match="the Stable Video Diffusion VAE's GroupNorms take their statistics"):
        DecodeStream(ours).push(z[:3])


def _encode_cases():
    """(name, diffusers' model, ours, frames) for the encoders that stream: each cut is exact."""
    gen = torch.Generator().manual_seed(22)
    hv15, ltx, mochi = diffusers_hv15(), diffusers_ltx(LTX_SMALL), diffusers_mochi()
    return [("HunyuanVideo 1.5", hv15, torch.rand(13, 32, 32, 3, generator=gen)),
            ("LTX-Video 0.9", ltx, torch.rand(17, 32, 32, 3, generator=gen)),
            ("Mochi", mochi, torch.rand(13, 16, 24, 3, generator=gen))]


@pytest.mark.parametrize("index", range(3))
def test_encoders_cut_anywhere_encode_as_diffusers_one_call(index):
    name, ref, frames = _encode_cases()[index]
    ours = build_vae(ref.state_dict())
    latent = pushed(EncodeStream(ours), frames, random_split(frames.shape[0], index, most=7), dim=0)
    with torch.no_grad():
        posterior = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist
    expected = posterior.mode() if name == "HunyuanVideo 1.5" else posterior.mean
    assert latent.shape == expected.shape, name
    assert (latent - expected).abs().max().item() <= TOL * max(1.0, expected.abs().max().item()), name
