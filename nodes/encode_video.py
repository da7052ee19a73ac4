"""FrameStreamEncodeVideoFile: encode a video file read frame by frame, never holding it in RAM as floats."""

from __future__ import annotations

import os

from ..vae_core.errors import FrameStreamError
from ..vae_core.io.audio import read_sound
from ..vae_core.io.video_reader import probe_video, read_video
from ..vae_core.streaming import engine
from . import host
from .encode import LATENT_OUTPUT_TOOLTIP
from .host import io
from .registry import register
from .tiling_inputs import tile_inputs
from .vae_input import VAE_TOOLTIP, prepare_encode

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


def input_videos() -> list[str]:
    folder = host.input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_SUFFIXES))


@register
class FrameStreamEncodeVideoFile(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamEncodeVideoFile",
            display_name="FrameStream Encode Video File",
            category="FrameStream",
            description=(
                "Encodes a video file to a video latent, decoding it frame by frame: a long input never sits in "
                "memory. Frames are read as the host's Load Video reads them. Pick a file from the input folder or "
                "connect a VIDEO (e.g. from Load Video); the file's sound comes out as AUDIO."),
            inputs=[
                io.Vae.Input("vae", tooltip=VAE_TOOLTIP),
                io.Combo.Input("file", options=input_videos(), upload=io.UploadType.video,
                               tooltip="A video in ComfyUI's input folder (ignored when video is connected)."),
                io.Int.Input("start_frame", default=0, min=0, max=10**7,
                             tooltip="First frame to encode (0 is the first frame of the file)."),
                io.Int.Input("frame_count", default=0, min=0, max=10**7, tooltip=(
                    "How many frames to encode after start_frame, counting kept frames; 0: to the end. Frames "
                    "beyond the last whole group of 4 are dropped, as VAE Encode does.")),
                io.Int.Input("stride", default=1, min=1, max=1000,
                             tooltip="Keep every N-th frame (2 halves the frame rate)."),
                io.Int.Input("width", default=0, min=0, max=8192, step=16,
                             tooltip="Resize frames to this width; 0 keeps the file's size."),
                io.Int.Input("height", default=0, min=0, max=8192, step=16,
                             tooltip="Resize frames to this height; 0 keeps the file's size."),
                io.Video.Input("video", optional=True, tooltip="A video from another node; used instead of file."),
                *tile_inputs(),
            ],
            outputs=[
                io.Latent.Output(tooltip=LATENT_OUTPUT_TOOLTIP),
                io.Audio.Output(display_name="audio", tooltip=(
                    "The file's sound over the encoded frames' time (all of it when reading to the end); an empty "
                    "sound when the file has none.")),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, vae=None, file=None, video=None, **_):
        path = os.path.join(host.input_directory(), file or "")
        return os.stat(path).st_mtime_ns if video is None and os.path.isfile(path) else float("nan")

    @classmethod
    def execute(cls, vae, file, start_frame, frame_count, stride, width, height, video=None, **tiling):
        path = _source_path(file, video)
        reading = host.video_reading()
        info = probe_video(path, reading)
        if (width == 0) != (height == 0):
            raise FrameStreamError(f"give both width and height to resize (got {width}x{height}), or 0 for both")
        size = (width, height) if width else None
        stop = None if frame_count == 0 else start_frame + frame_count * stride
        model, settings = prepare_encode(vae, height or info.height, width or info.width, tiling)
        reader = read_video(path, start_frame, stop, stride, size, chunk=(1, model.temporal_ratio), reading=reading)
        latent = engine.encode(model, reader, settings=settings, frame_count=reader.frames)
        if info.fps > 0:  # the sound over the selected frames' time
            sound = read_sound(path, start_frame / info.fps, None if stop is None or stop >= info.frames
                               else stop / info.fps)
        else:  # a file without a frame rate: no time to select by
            sound = read_sound(path)
        return io.NodeOutput({"samples": latent}, sound.as_host_audio())


def _source_path(file: str, video) -> str:
    if video is None:
        return os.path.join(host.input_directory(), file)
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else video
    if not isinstance(source, (str, os.PathLike)):
        raise FrameStreamError("the connected VIDEO is held in memory, not in a file; save it first or pick a file")
    return os.fspath(source)
