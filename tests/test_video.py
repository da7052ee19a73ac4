"""Video files: what the sink writes decodes back to the frames given, and reading selects the right frames.

Exactness is checked on lossless files filled with noise, so a wrong frame,
order or rounding cannot go unnoticed; the default H.264 path is checked for
closeness on a smooth clip, as lossy codecs only promise that.
"""

from __future__ import annotations

import os
import stat
import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.io.video_reader import EIGHT_BIT, FULL_PRECISION, probe_video, read_video
from helpers import rotate_mp4

av = pytest.importorskip("av")  # video.py itself imports PyAV only when a video is touched


def noise(*shape, seed=0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def smooth(frames, height, width) -> torch.Tensor:
    """Colourful gradients drifting over time: what a lossy codec should keep well."""
    t = torch.arange(frames).view(-1, 1, 1, 1).float()
    y = torch.linspace(0, 1, height).view(1, -1, 1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, -1, 1)
    phase = torch.tensor([0.0, 2.1, 4.2])
    return 0.5 + 0.4 * torch.sin(3 * x + 2 * y + 0.2 * t + phase)


def as_uint8(frames: torch.Tensor) -> torch.Tensor:
    """What the sink promises to store: each value rounded to the nearest of 256 levels."""
    return (frames * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)


def write(path, videos: torch.Tensor, fps=16, **options) -> VideoFileSink:
    """Feeds ``videos`` [B, T, H, W, 3] to a sink as the engine does: 1 frame, then 4 at a time."""
    sink = VideoFileSink(path, fps, **options)
    sink.start(tuple(videos.shape))
    for batch, video in enumerate(videos):
        for start in [0, *range(1, video.shape[0], 4)]:
            stop = 1 if start == 0 else start + 4
            sink.write(batch, start, video[start:stop])
    assert sink.result() == str(path)
    return sink


def read_all(path, reading=EIGHT_BIT, **selection) -> torch.Tensor:
    """Every selected frame; through 8-bit RGB by default, which gives a lossless file's stored values exactly."""
    return torch.cat(list(read_video(path, reading=reading, **selection)))


def decoded_uint8(path) -> torch.Tensor:
    """Every frame as PyAV itself decodes it, independent of read_video."""
    with av.open(str(path)) as container:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
@pytest.mark.parametrize("height, width", [(32, 48), (33, 47)])
def test_lossless_round_trip_is_exact(tmp_path, suffix, height, width):
    frames = noise(1, 9, height, width, 3)
    path = tmp_path / f"clip{suffix}"
    sink = write(path, frames, lossless=True)
    assert (sink.frames, sink.width, sink.height) == (9, width, height)
    expected = as_uint8(frames[0])
    assert torch.equal(decoded_uint8(path), expected)
    back = read_all(path)
    assert back.dtype == torch.float32 and back.shape == (9, height, width, 3)
    assert torch.equal(as_uint8(back), expected)
    assert torch.equal(back, expected.float() / 255)
    # at full precision (the host's float path) swscale scales 8-bit RGB by about 256/257: 255 reads 0.9961
    floats = read_all(path, FULL_PRECISION)
    assert (floats - back).abs().max() <= 1.5 / 255 and not torch.equal(floats, back)


def test_values_are_rounded_to_nearest_and_clamped(tmp_path):
    levels = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 127.49 / 255, 127.51 / 255, 1.0, 1.7])
    frames = levels.view(1, 1, 1, -1, 1).expand(1, 1, 2, 8, 3).contiguous()
    write(tmp_path / "levels.mp4", frames, lossless=True)
    assert decoded_uint8(tmp_path / "levels.mp4")[0, 0, :, 0].tolist() == [0, 0, 0, 1, 127, 128, 255, 255]


@pytest.mark.parametrize("fps", [16, 24, 30000 / 1001, Fraction(30000, 1001), 12.5])
def test_frame_count_rate_and_size_survive(tmp_path, fps):
    path = tmp_path / "clip.mp4"
    sink = write(path, noise(1, 13, 32, 48, 3), fps=fps)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (13, 48, 32)
    assert info.fps == pytest.approx(float(fps), abs=1e-9) and sink.fps == pytest.approx(float(fps), abs=1e-9)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(13 / float(fps), abs=1e-6)


def test_default_is_h264_yuv420p_and_close(tmp_path):
    frames = smooth(17, 64, 64)
    path = tmp_path / "clip.mp4"
    write(path, frames[None], crf=19)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt) == ("h264", "yuv420p")
    back = read_all(path)
    assert back.shape == frames.shape
    error = (back - frames).abs()
    assert error.mean() < 0.03, error.mean()
    assert error.max() > 0  # really the lossy path
    worse = read_all(_written(tmp_path / "worse.mp4", frames, crf=45))
    assert (worse - frames).abs().mean() > error.mean()  # crf reaches the encoder


def _written(path, frames, **options):
    write(path, frames[None], **options)
    return path


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path):
    frames = smooth(9, 33, 47)
    path = tmp_path / "odd.mp4"
    sink = write(path, frames[None])
    assert (sink.width, sink.height) == (48, 34)
    info = probe_video(path)
    assert (info.width, info.height) == (48, 34)
    back = read_all(path)
    assert (back[:, :33, :47] - frames).abs().mean() < 0.03
    assert (back[:, 33, :47] - frames[:, 32]).abs().mean() < 0.03  # the added row repeats the last one
    assert (back[:, :33, 47] - frames[:, :, 46]).abs().mean() < 0.03


def test_batch_videos_follow_one_another(tmp_path):
    frames = noise(2, 9, 32, 48, 3, seed=3)
    path = tmp_path / "batch.mp4"
    sink = write(path, frames, lossless=True)
    assert sink.frames == 18 and probe_video(path).frames == 18
    assert torch.equal(decoded_uint8(path), as_uint8(frames.reshape(18, 32, 48, 3)))


@pytest.fixture(scope="module")
def lossless_clip(tmp_path_factory):
    """17 noise frames, stored exactly, and all of them as PyAV decodes them."""
    path = tmp_path_factory.mktemp("clip") / "clip.mkv"  # Matroska: no frame count in the header
    write(path, noise(1, 17, 32, 48, 3, seed=7), fps=24, lossless=True)
    return path, decoded_uint8(path).float() / 255


@pytest.mark.parametrize("start, stop, stride", [(0, None, 1), (3, None, 1), (2, 11, 3), (16, None, 1), (5, 100, 4), (0, 1, 1)])
def test_selection_matches_slicing(lossless_clip, start, stop, stride):
    path, everything = lossless_clip
    assert everything.shape[0] == 17
    reader = read_video(path, start=start, stop=stop, stride=stride, reading=EIGHT_BIT)
    expected = everything[start:stop:stride]
    assert reader.frames == expected.shape[0]
    assert reader.fps == pytest.approx(24 / stride)
    assert torch.equal(torch.cat(list(reader)), expected)


@pytest.mark.parametrize("chunk, sizes", [(1, [1] * 17), (5, [5, 5, 5, 2]), ((1, 4), [1, 4, 4, 4, 4]), ([2, 3, 1], [2, 3] + [1] * 12)])
def test_chunks(lossless_clip, chunk, sizes):
    path, everything = lossless_clip
    chunks = list(read_video(path, chunk=chunk, reading=EIGHT_BIT))
    assert [c.shape[0] for c in chunks] == sizes
    assert torch.equal(torch.cat(chunks), everything)


def test_chunks_after_selection(lossless_clip):
    path, everything = lossless_clip
    chunks = list(read_video(path, start=1, stop=12, stride=2, chunk=(1, 4), reading=EIGHT_BIT))
    assert [c.shape[0] for c in chunks] == [1, 4, 1]
    assert torch.equal(torch.cat(chunks), everything[1:12:2])


def test_header_less_count_is_counted(lossless_clip):
    path, _ = lossless_clip
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # so the fallback is what is tested
    assert probe_video(path).frames == 17


def test_resize(tmp_path):
    frames = smooth(5, 64, 96)
    path = _written(tmp_path / "big.mp4", frames, lossless=True)
    reader = read_video(path, size=(48, 24))
    assert (reader.width, reader.height) == (48, 24)
    small = torch.cat(list(reader))
    assert small.shape == (5, 24, 48, 3)
    reference = torch.nn.functional.interpolate(read_all(path).permute(0, 3, 1, 2), size=(24, 48), mode="bicubic", antialias=True)
    assert (small - reference.permute(0, 2, 3, 1)).abs().mean() < 0.01


def _pyav_frames(path, pixel_format: str):
    """The first frame through PyAV's own conversion to ``pixel_format`` (the host's per-frame call)."""
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format=pixel_format)


def test_full_precision_reads_the_hosts_float_frames(tmp_path):
    """A YUV 4:2:0 video (most files) at full precision: PyAV's float planar RGB as it is, not rounded to 8 bits;
    through 8-bit RGB exactly its bytes / 255 (ComfyUI before 0.20). The two differ by more than the rounding:
    swscale upsamples the chroma differently on the two paths."""
    path = _written(tmp_path / "clip.mp4", smooth(3, 32, 64), crf=19)  # 64 px wide: no alignment padding
    floats, eight = read_all(path, FULL_PRECISION)[0], read_all(path, EIGHT_BIT)[0]
    assert torch.equal(floats, torch.from_numpy(_pyav_frames(path, "gbrpf32le")))
    assert torch.equal(eight, torch.from_numpy(_pyav_frames(path, "rgb24")).float() / 255)
    assert (floats * 255 - (floats * 255).round()).abs().max() > 0.1  # between 8-bit levels: not rounded
    assert 0.5 / 255 < (floats - eight).abs().mean() < 8 / 255


def test_an_unaligned_width_reads_the_same_every_time(tmp_path):
    """swscale's float output at a width that is not a multiple of 32 depends on how the frame's rows happen to be
    aligned in memory (ComfyUI #14438): the host pads such frames to the next multiple of 32 (edges repeated)
    before converting, and so does full precision. Equality with the host's own reading is the host test's."""
    path = _written(tmp_path / "clip.mp4", smooth(9, 30, 48), crf=19)  # 48 x 30: both unaligned
    readings = [read_all(path, FULL_PRECISION, chunk=chunk) for chunk in (1, 4, 9)]
    assert all(torch.equal(reading, readings[0]) for reading in readings[1:])
    assert readings[0].shape == (9, 30, 48, 3)


def test_full_range_8_bit_video_reads_through_bytes_and_10_bit_keeps_its_levels(tmp_path):
    for pixel_format in ("yuvj420p", "yuv420p10le"):
        path = tmp_path / f"{pixel_format}.mkv"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=16)
            stream.width, stream.height, stream.pix_fmt = 64, 32, pixel_format
            ramp = np.linspace(0, 65535, 64 * 32 * 3).reshape(32, 64, 3).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(ramp, format="rgb48le").reformat(format=pixel_format)
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        frames = read_all(path, FULL_PRECISION)[0]
        if pixel_format == "yuvj420p":  # the host's 8-bit exception (0.21+): rgb24 / 255
            assert torch.equal(frames, torch.from_numpy(_pyav_frames(path, "rgb24")).float() / 255)
        else:
            assert frames.unique().numel() > 2 * read_all(path, EIGHT_BIT)[0].unique().numel()


def test_a_rotated_video_reads_upright_at_full_precision(tmp_path):
    """Phones store portrait video sideways with a display rotation; the host (0.21+) turns the frames."""
    path = _written(tmp_path / "portrait.mp4", smooth(5, 32, 64), crf=19)
    upright = read_all(path, FULL_PRECISION)
    rotate_mp4(path)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).rotation == -90
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 270)
    turned = read_all(path, FULL_PRECISION)
    assert turned.shape == (5, 64, 32, 3)
    assert torch.equal(turned, torch.rot90(upright, k=-1, dims=(1, 2)))
    assert read_all(path, EIGHT_BIT).shape == (5, 32, 64, 3)  # the old host did not turn them
    small = read_video(path, size=(16, 32))  # a size is the upright frame's
    assert next(small).shape == (1, 32, 16, 3)


def test_partial_file_is_hidden_until_finished(tmp_path):
    frames = noise(1, 5, 32, 48, 3)
    sink = VideoFileSink(tmp_path / "out.mp4", 16)
    sink.start(tuple(frames.shape))
    sink.write(0, 0, frames[0, :2])
    (partial,) = os.listdir(tmp_path)
    assert partial.startswith(".") and partial.endswith(".mp4") and os.path.join(tmp_path, partial) == sink.temp_path
    sink.write(0, 2, frames[0, 2:])
    path = sink.result()
    assert os.listdir(tmp_path) == ["out.mp4"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    sink.abort()  # after success: keeps the file
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_abort_leaves_nothing(tmp_path):
    frames = noise(1, 9, 32, 48, 3)
    VideoFileSink(tmp_path / "never.mp4", 16).abort()  # before start
    sink = VideoFileSink(tmp_path / "out.mp4", 16)
    sink.start(tuple(frames.shape))
    sink.write(0, 0, frames[0, :5])
    sink.abort()
    sink.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(FrameStreamError, match="start"):
        sink.write(0, 5, frames[0, 5:])


def test_exception_mid_write_leaves_nothing(tmp_path):
    frames = noise(2, 9, 32, 48, 3)
    sink = VideoFileSink(tmp_path / "out.mp4", 16, lossless=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        try:
            sink.start(tuple(frames.shape))
            sink.write(0, 0, frames[0])
            sink.write(1, 0, frames[1, :3])
            raise RuntimeError("interrupted")
        except BaseException:
            sink.abort()  # what the engine does
            raise
    assert os.listdir(tmp_path) == []


def test_the_background_encoder_writes_the_same_file_and_reports_its_failure(tmp_path):
    """Encoded on its own thread or in the caller's, a lossless file holds the same frames; an encoder that fails
    mid-file is reported by the next write (or by result()) and leaves nothing behind."""
    frames = noise(1, 40, 32, 48, 3)
    paths = []
    for background in (True, False):
        sink = VideoFileSink(tmp_path / f"out_{background}.mp4", 16, lossless=True, background=background)
        sink.start(tuple(frames.shape))
        for start in range(0, 40, 8):
            sink.write(0, start, frames[0, start : start + 8])
        paths.append(sink.result())
    assert torch.equal(decoded_uint8(paths[0]), decoded_uint8(paths[1]))
    assert torch.equal(decoded_uint8(paths[0]), as_uint8(frames[0]))

    sink = VideoFileSink(tmp_path / "failing.mp4", 16)
    encode, count = sink._encode, []

    def failing(pixels):
        if len(count) == 3:
            raise OSError("disk full")
        count.append(1)
        encode(pixels)

    sink._encode = failing  # before start(), which hands it to the thread
    sink.start(tuple(frames.shape))
    with pytest.raises(OSError, match="disk full"):
        for start in range(0, 40, 8):
            sink.write(0, start, frames[0, start : start + 8])
        sink.result()
    sink.abort()  # what the engine does
    assert sorted(os.listdir(tmp_path)) == ["out_False.mp4", "out_True.mp4"]


def test_too_few_frames_keep_nothing(tmp_path):
    frames = noise(1, 9, 32, 48, 3)
    sink = VideoFileSink(tmp_path / "out.mp4", 16)
    sink.start(tuple(frames.shape))
    sink.write(0, 0, frames[0, :4])
    with pytest.raises(FrameStreamError, match="only 4 of 9 frames"):
        sink.result()
    assert os.listdir(tmp_path) == []


def test_misuse_of_the_sink(tmp_path):
    frames = noise(2, 5, 32, 48, 3)
    sink = VideoFileSink(tmp_path / "out.mp4", 16)
    with pytest.raises(FrameStreamError, match="needs start"):
        sink.write(0, 0, frames[0])
    with pytest.raises(FrameStreamError, match=r"\(B, T, H, W, 3\)"):
        sink.start((1, 16, 3, 4, 4))  # a latent
    sink.start(tuple(frames.shape))
    with pytest.raises(FrameStreamError, match="one video file"):
        sink.start(tuple(frames.shape))
    with pytest.raises(FrameStreamError, match="expected frame 0 of video 0, got frame 0 of video 1"):
        sink.write(1, 0, frames[1])
    with pytest.raises(FrameStreamError, match=r"\[t, 32, 48, 3\]"):
        sink.write(0, 0, frames[0, :, :16])
    sink.abort()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fps", [0, -24, float("nan"), float("inf"), "24", True])
def test_bad_fps(tmp_path, fps):
    with pytest.raises(FrameStreamError, match="fps must be a positive finite number"):
        VideoFileSink(tmp_path / "out.mp4", fps)


@pytest.mark.parametrize("crf", [-1, 52, 18.5, "19"])
def test_bad_crf(tmp_path, crf):
    with pytest.raises(FrameStreamError, match="crf must be a whole number from 0"):
        VideoFileSink(tmp_path / "out.mp4", 16, crf=crf)


@pytest.mark.parametrize("name", ["out.avi", "out.gif", "out", "out.mp4.tmp"])
def test_bad_suffix(tmp_path, name):
    with pytest.raises(FrameStreamError, match=r"must end in \.mp4, \.mov, \.mkv"):
        VideoFileSink(tmp_path / name, 16)


def test_bad_output_place(tmp_path):
    with pytest.raises(FrameStreamError, match="output folder does not exist"):
        VideoFileSink(tmp_path / "missing" / "out.mp4", 16)
    (tmp_path / "taken.mp4").mkdir()
    with pytest.raises(FrameStreamError, match="is a folder"):
        VideoFileSink(tmp_path / "taken.mp4", 16)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(FrameStreamError, match="video file not found"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(FrameStreamError, match="video file not found"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n" * 20)
    with pytest.raises(FrameStreamError, match="notes.mp4 is not a readable video file"):
        read_video(text)
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(8000), f.writeframes(b"\0\0" * 800)
    with pytest.raises(FrameStreamError, match=r"sound.wav has no video stream \(it holds: audio\)"):
        probe_video(sound)


@pytest.mark.parametrize("selection, message", [
    ({"start": 17}, "start=17 is beyond the end of .*17 frames"),
    ({"start": 99}, "start=99 is beyond"),
    ({"start": -1}, "start must be a whole number of at least 0"),
    ({"start": 5, "stop": 5}, "stop must be a frame index after start=5"),
    ({"start": 5, "stop": 2}, "stop must be a frame index after start=5"),
    ({"stride": 0}, "stride must be a whole number of at least 1"),
    ({"stride": 1.5}, "stride must be a whole number"),
    ({"size": (0, 16)}, r"size must be \(width, height\), two positive"),
    ({"size": (32, -2)}, r"size must be \(width, height\)"),
    ({"size": 32}, r"size must be \(width, height\)"),
    ({"chunk": 0}, "chunk must be a positive number of frames"),
    ({"chunk": (1, 0)}, "chunk must be a positive number of frames"),
    ({"chunk": ()}, "chunk must be a positive number of frames"),
])
def test_bad_selection(lossless_clip, selection, message):
    path, _ = lossless_clip
    with pytest.raises(FrameStreamError, match=message):
        read_video(path, **selection)
