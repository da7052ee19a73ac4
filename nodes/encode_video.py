"""FrameStreamEncodeVideoFile: encode a video file read frame by frame, never holding it in RAM as floats."""

from __future__ import annotations

import os

from ..vae_core.streaming import engine
from ..vae_core.errors import FrameStreamError
from ..vae_core.io.video import probe_video, read_video
from . import host
from .encode import LATENT_OUTPUT_TOOLTIP
from .registry import node
from .tiling_inputs import TILE_INPUTS
from .vae_input import VAE_TOOLTIP, prepare_encode

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


def input_videos() -> list[str]:
    folder = host.input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_SUFFIXES))


@node("FrameStream Encode Video File")
class FrameStreamEncodeVideoFile:
    DESCRIPTION = (
        "Encodes a video file to a video latent, decoding it frame by frame: a long input never sits in memory. "
        "Pick a file from the input folder or connect a VIDEO (e.g. from Load Video)."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = (LATENT_OUTPUT_TOOLTIP,)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": VAE_TOOLTIP}),
                "file": (input_videos(), {"video_upload": True,
                                          "tooltip": "A video in ComfyUI's input folder (ignored when video is connected)."}),
                "start_frame": ("INT", {"default": 0, "min": 0, "max": 10**7,
                                        "tooltip": "First frame to encode (0 is the first frame of the file)."}),
                "frame_count": ("INT", {"default": 0, "min": 0, "max": 10**7,
                                        "tooltip": "How many frames to encode after start_frame, counting kept "
                                                   "frames; 0: to the end. Frames beyond the last whole group of 4 "
                                                   "are dropped, as VAE Encode does."}),
                "stride": ("INT", {"default": 1, "min": 1, "max": 1000,
                                   "tooltip": "Keep every N-th frame (2 halves the frame rate)."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 16,
                                  "tooltip": "Resize frames to this width; 0 keeps the file's size."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 16,
                                   "tooltip": "Resize frames to this height; 0 keeps the file's size."}),
            },
            "optional": {"video": ("VIDEO", {"tooltip": "A video from another node; used instead of file."}),
                         **TILE_INPUTS},
        }

    @classmethod
    def IS_CHANGED(cls, vae=None, file=None, video=None, **_):
        path = os.path.join(host.input_directory(), file or "")
        return os.stat(path).st_mtime_ns if video is None and os.path.isfile(path) else float("nan")

    def encode(self, vae, file, start_frame, frame_count, stride, width, height, video=None, **tiling):
        path = _source_path(file, video)
        info = probe_video(path)
        if (width == 0) != (height == 0):
            raise FrameStreamError(f"give both width and height to resize (got {width}x{height}), or 0 for both")
        size = (width, height) if width else None
        stop = None if frame_count == 0 else start_frame + frame_count * stride
        model, settings = prepare_encode(vae, height or info.height, width or info.width, tiling)
        reader = read_video(path, start_frame, stop, stride, size, chunk=(1, model.temporal_ratio))
        latent = engine.encode(model, reader, settings=settings, frame_count=reader.frames)
        return ({"samples": latent},)


def _source_path(file: str, video) -> str:
    if video is None:
        return os.path.join(host.input_directory(), file)
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else video
    if not isinstance(source, (str, os.PathLike)):
        raise FrameStreamError("the connected VIDEO is held in memory, not in a file; save it first or pick a file")
    return os.fspath(source)
