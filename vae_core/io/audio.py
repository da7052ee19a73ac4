"""Sound beside the frames: checking what a user hands in, reading a file's track, and the encoder that muxes it
into a video file as the frames stream.

A :class:`Sound` is what the host's AUDIO holds (``waveform`` ``[1, channels, samples]`` float in [-1, 1] and a
``sample_rate``), without the batch axis.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ..errors import FrameStreamError
from .pyav import load_av, open_media

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}  # channel counts the encoders take, as the host writes them
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
OPUS_RATE = 48000  # Opus codes at 48 kHz; other rates are resampled to it, as the host does for .webm
EMPTY_RATE = 44100  # the rate of the empty sound a video without a track reads as


@dataclass(frozen=True)
class Sound:
    samples: torch.Tensor  # [channels, n] float32 on the CPU
    rate: int  # samples per second

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate

    def as_host_audio(self) -> dict:
        """The host's AUDIO: ``{"waveform": [1, C, n], "sample_rate": rate}``."""
        return {"waveform": self.samples.unsqueeze(0), "sample_rate": self.rate}


def empty_sound() -> Sound:
    return Sound(torch.zeros(1, 0), EMPTY_RATE)


def check_sound(waveform, sample_rate, source: str = "audio") -> Sound:
    """A :class:`Sound` from a waveform ``[1, C, n]`` or ``[C, n]`` and its rate, or one clear error."""
    if not isinstance(waveform, torch.Tensor):
        raise FrameStreamError(f"{source} holds a {type(waveform).__name__}, not a waveform tensor; expected the "
                               "host's AUDIO (waveform [1, channels, samples] and sample_rate)")
    if waveform.ndim == 3:
        if waveform.shape[0] != 1:
            raise FrameStreamError(f"{source} holds a batch of {waveform.shape[0]} sounds (waveform "
                                   f"{list(waveform.shape)}); a video file takes one: pick one sound")
        waveform = waveform[0]
    if waveform.ndim != 2:
        raise FrameStreamError(f"{source} waveform has shape {list(waveform.shape)}; expected [1, channels, samples]")
    channels, samples = waveform.shape
    if channels not in LAYOUTS:
        raise FrameStreamError(f"{source} has {channels} channels; a video file's sound takes "
                               f"{', '.join(f'{n} ({name})' for n, name in LAYOUTS.items())}: mix it down first")
    if samples == 0:
        raise FrameStreamError(f"{source} holds no samples (an empty sound); connect a sound, or leave the audio "
                               "input unconnected for a silent video")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or sample_rate != int(sample_rate) \
            or not 1000 <= sample_rate <= 384000:
        raise FrameStreamError(f"{source} sample rate is {sample_rate!r}; expected a whole number of samples per "
                               "second from 1000 to 384000, such as 44100 or 48000")
    if not waveform.is_floating_point():
        raise FrameStreamError(f"{source} waveform is {waveform.dtype}; expected floats in [-1, 1]")
    bad = (~torch.isfinite(waveform)).sum().item()
    if bad:
        raise FrameStreamError(f"{source} contains {bad} NaN/inf samples")
    return Sound(waveform.detach().to("cpu", torch.float32).contiguous(), int(sample_rate))


def _last_decodable(container):
    """The track the host reads: the last audio stream FFmpeg can decode (some phones add undecodable ones)."""
    return next((s for s in reversed(container.streams.audio) if s.codec_context is not None), None)


def read_sound(path: str, start: float = 0.0, stop: float | None = None, required: bool = False) -> Sound:
    """A file's sound from ``start`` to ``stop`` seconds (None: to its end), decoded at its own rate and channels
    as float (the host's reading). A file without a track gives an empty sound, or with ``required`` an error."""
    av = load_av()
    container = open_media(path, "audio file" if required else "video file",
                           "a sound or video file such as .wav, .flac, .mp3, .m4a or .mp4" if required else
                           "a video such as .mp4, .mkv, .mov or .webm")
    with container:
        stream = _last_decodable(container)
        if stream is None:
            if required:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
                raise FrameStreamError(f"{path} has no sound FFmpeg can decode (it holds: {kinds}); expected an "
                                       "audio file or a video with a sound track")
            return empty_sound()
        resampler = av.audio.resampler.AudioResampler(format="fltp")
        pieces, first_time = [], None
        try:
            for frame in container.decode(stream):
                for planar in resampler.resample(frame):
                    if first_time is None:
                        first_time = float(planar.time or 0.0)
                    pieces.append(planar.to_ndarray())
        except av.FFmpegError as err:
            raise FrameStreamError(f"{path}: its sound could not be decoded ({err})") from None
        rate = stream.codec_context.sample_rate or stream.rate
    if not pieces:
        if required:
            raise FrameStreamError(f"{path} has a sound track without samples; expected a sound")
        return empty_sound()
    samples = np.concatenate(pieces, axis=1)
    begin = max(0, round((start - max(first_time, 0.0)) * rate))
    end = samples.shape[1] if stop is None else max(begin, round((stop - max(first_time, 0.0)) * rate))
    return Sound(torch.from_numpy(np.ascontiguousarray(samples[:, begin:end])).float(), int(rate))


class SoundTrack:
    """Encodes a :class:`Sound` into an open container beside its video: AAC (Opus in WebM), muxed up to each
    video frame's time as frames arrive, so both streams interleave; ``finish()`` writes the rest, so the track
    lasts as long as the sound, whatever the video's length."""

    def __init__(self, container, sound: Sound, webm: bool) -> None:
        av = load_av()
        self.sound, self.layout = sound, LAYOUTS[sound.channels]
        codec_rate = OPUS_RATE if webm else sound.rate if sound.rate in AAC_RATES else 48000
        self.stream = container.add_stream("libopus" if webm else "aac", rate=codec_rate, layout=self.layout)
        self.container, self.written, self._av = container, 0, av

    def write_until(self, seconds: float) -> None:
        """Muxes the sound up to ``seconds`` (the end of the last video frame written)."""
        self._write(min(self.sound.samples.shape[1], math.floor(seconds * self.sound.rate)))

    def finish(self) -> None:
        self._write(self.sound.samples.shape[1])
        self.container.mux(self.stream.encode(None))

    def _write(self, until: int) -> None:
        if until <= self.written:
            return
        block = self.sound.samples[:, self.written:until].numpy()
        frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=self.layout)
        frame.sample_rate, frame.pts, frame.time_base = self.sound.rate, self.written, Fraction(1, self.sound.rate)
        self.container.mux(self.stream.encode(frame))
        self.written = until
