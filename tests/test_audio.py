"""Sound beside the frames: a video file's track is as long as the sound and close to it (AAC and Opus are lossy),
the frames are the same with or without it, and every bad sound gets one message before anything is written."""

from __future__ import annotations

import wave

import pytest
import torch

from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.io.audio import Sound, check_sound, read_sound
from framestream.vae_core.io.video import VideoFileSink
from framestream.vae_core.io.video_reader import EIGHT_BIT, read_video
from helpers import tone

av = pytest.importorskip("av")


def write(path, frames: torch.Tensor, sound: Sound | None, fps=16, **options) -> None:
    sink = VideoFileSink(path, fps, sound=sound, **options)
    sink.start((1, *frames.shape))
    for start in range(0, frames.shape[0], 4):  # as the engine hands frames over
        sink.write(0, start, frames[start : start + 4])
    sink.result()


def snr_db(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    """Over the middle of the sound (codecs fade in their first and last frames)."""
    n = reference.shape[1]
    ref, out = reference[:, n // 8 : -n // 8], decoded[:, n // 8 : -n // 8]
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


@pytest.mark.parametrize("suffix, codec, rate", [(".mp4", "aac", 44100), (".mkv", "aac", 44100),
                                                 (".mov", "aac", 22050), (".webm", "opus", 48000)])
@pytest.mark.parametrize("seconds", [0.4, 1.5])  # shorter and longer than the 9 frames (0.5625 s)
def test_the_track_is_the_whole_sound(tmp_path, suffix, codec, rate, seconds):
    sound = Sound(tone(seconds, rate=rate if codec == "aac" else 44100), rate if codec == "aac" else 44100)
    path = tmp_path / f"clip{suffix}"
    write(path, torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(1)), sound)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == codec
        assert sum(1 for _ in container.decode(video=0)) == 9
    back = read_sound(path)
    assert back.rate == rate and back.channels == 2
    expected = sound.samples if back.rate == sound.rate else \
        torch.nn.functional.interpolate(sound.samples[None], size=round(seconds * back.rate), mode="linear")[0]
    assert abs(back.samples.shape[1] - expected.shape[1]) < 1024 + 312  # one codec frame (Opus: its pre-skip)
    n = min(back.samples.shape[1], expected.shape[1])
    assert snr_db(expected[:, :n], back.samples[:, :n]) > 15


def test_the_frames_are_the_same_with_or_without_sound(tmp_path):
    frames = torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(2))
    write(tmp_path / "silent.mp4", frames, None, lossless=True)
    write(tmp_path / "sound.mp4", frames, Sound(tone(2.0, channels=1), 44100), lossless=True)
    silent, sound = (torch.cat(list(read_video(tmp_path / name, reading=EIGHT_BIT))) for name in ("silent.mp4", "sound.mp4"))
    assert torch.equal(silent, sound)
    assert read_sound(tmp_path / "sound.mp4").channels == 1 and read_sound(tmp_path / "silent.mp4").seconds == 0


def test_the_track_interleaves_with_the_frames(tmp_path):
    """Muxed as the frames arrive, not at the end: the sound's packets are spread between the frames'."""
    path = tmp_path / "clip.mkv"
    write(path, torch.rand(33, 16, 16, 3), Sound(tone(2.0), 44100))
    with av.open(str(path)) as container:
        kinds = [packet.stream.type for packet in container.demux() if packet.size]
    first_audio, last_video = kinds.index("audio"), len(kinds) - 1 - kinds[::-1].index("video")
    assert first_audio < last_video / 2


def test_read_sound_selects_a_time_span_and_a_file_without_sound_is_empty(tmp_path):
    path = tmp_path / "clip.mkv"
    sound = Sound(tone(2.0), 44100)
    write(path, torch.rand(33, 16, 16, 3), sound)
    whole, middle = read_sound(path), read_sound(path, 0.5, 1.25)
    assert middle.samples.shape[1] == round(0.75 * 44100)
    assert torch.equal(middle.samples, whole.samples[:, round(0.5 * 44100) : round(1.25 * 44100)])
    write(tmp_path / "silent.mkv", torch.rand(5, 16, 16, 3), None)
    empty = read_sound(tmp_path / "silent.mkv")
    assert empty.samples.shape == (1, 0) and empty.as_host_audio()["waveform"].shape == (1, 1, 0)


def test_a_wav_file_is_read_exactly(tmp_path):
    samples = (tone(0.3, rate=16000) * 32767).round().to(torch.int16)
    with wave.open(str(tmp_path / "sound.wav"), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(samples.t().contiguous().numpy().tobytes())
    sound = read_sound(tmp_path / "sound.wav", required=True)
    assert sound.rate == 16000 and torch.equal(sound.samples, samples.float() / 32768)


@pytest.mark.parametrize("waveform, rate, message", [
    (torch.zeros(1, 2, 0), 44100, "holds no samples"),
    (torch.zeros(1, 3, 100), 44100, r"has 3 channels; a video file's sound takes 1 \(mono\), 2 \(stereo\), 6 \(5.1\)"),
    (torch.zeros(2, 2, 100), 44100, "holds a batch of 2 sounds"),
    (torch.zeros(100), 44100, r"waveform has shape \[100\]; expected \[1, channels, samples\]"),
    ([0.0, 0.1], 44100, "holds a list, not a waveform tensor"),
    (torch.zeros(1, 2, 100, dtype=torch.int16), 44100, "waveform is torch.int16; expected floats"),
    (torch.full((1, 2, 100), float("nan")), 44100, "contains 200 NaN/inf samples"),
    (torch.zeros(1, 2, 100), 0, "sample rate is 0"),
    (torch.zeros(1, 2, 100), 44100.5, "sample rate is 44100.5"),
])
def test_bad_sounds_get_one_clear_message(waveform, rate, message):
    with pytest.raises(FrameStreamError, match=message):
        check_sound(waveform, rate, "audio")


def test_unreadable_sound_files(tmp_path):
    with pytest.raises(FrameStreamError, match="audio file not found"):
        read_sound(tmp_path / "missing.wav", required=True)
    (tmp_path / "notes.wav").write_text("not a sound\n" * 50)
    with pytest.raises(FrameStreamError, match="notes.wav is not a readable audio file"):
        read_sound(tmp_path / "notes.wav", required=True)
    write(tmp_path / "silent.mp4", torch.rand(5, 16, 16, 3), None)
    with pytest.raises(FrameStreamError, match=r"silent.mp4 has no sound FFmpeg can decode \(it holds: video\)"):
        read_sound(tmp_path / "silent.mp4", required=True)
    with pytest.raises(FrameStreamError, match="is a folder"):
        read_sound(tmp_path, required=True)
