"""FrameStreamDecodeToVideo: decode straight into a video file, so no frame of a long video is kept in RAM."""

from __future__ import annotations

import os

from ..vae_core.streaming import engine
from ..vae_core.io.files import numbered_output
from ..vae_core.io.video import VideoFileSink
from . import host
from .decode import DECODE_INPUTS, FRAMES_PER_STEP, SEGMENT_INPUTS, segments_sink
from .registry import node
from .tiling_inputs import TILE_INPUTS
from .vae_input import prepare_decode

CODECS = {"h264": False, "h264 lossless (RGB)": True}


@node("FrameStream Decode to Video File")
class FrameStreamDecodeToVideo:
    DESCRIPTION = (
        "Decodes a video latent and writes each frame to an mp4 as soon as it is decoded: RAM stays flat however "
        "long the video. Interrupted or failed runs leave no partial file."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "decode"
    OUTPUT_NODE = True
    RETURN_TYPES = ("VIDEO", "STRING")
    RETURN_NAMES = ("video", "path")
    OUTPUT_TOOLTIPS = ("The written video (Save Video, previews and other VIDEO inputs take it).",
                       "The file's full path.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **DECODE_INPUTS,
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": 240.0, "step": 1.0,
                                  "tooltip": "Frame rate of the file (Wan 2.1 makes 16 fps video, Wan 2.2 5B 24)."}),
                "filename_prefix": ("STRING", {"default": "FrameStream/video",
                                               "tooltip": "File name inside the output folder; may contain "
                                                          "subfolders, never '..' or an absolute path."}),
                "codec": (list(CODECS), {"default": "h264",
                                         "tooltip": "h264: small files every player opens. Lossless: exact 8-bit "
                                                    "RGB, large, not playable in browsers."}),
                "crf": ("INT", {"default": 19, "min": 0, "max": 51,
                                "tooltip": "h264 quality: lower is better and larger; 17-23 is typical."}),
            },
            "optional": {"frames_per_step": FRAMES_PER_STEP, **TILE_INPUTS, **SEGMENT_INPUTS},
        }

    def decode(self, vae, samples, fps, filename_prefix, codec, crf, frames_per_step=engine.DEFAULT_FRAMES_PER_STEP,
               segment_overlap=0, crossfade=False, **tiling):
        root = host.output_directory()
        path = numbered_output(root, filename_prefix, ".mp4")
        sink = segments_sink(VideoFileSink(path, fps, crf=crf, lossless=CODECS[codec]), segment_overlap, crossfade)
        model, latent, settings = prepare_decode(vae, samples, frames_per_step, tiling, sink)
        engine.decode(model, latent, sink=sink, settings=settings)
        folder, name = os.path.split(os.path.relpath(path, root))
        preview = {"filename": name, "subfolder": folder, "type": "output"}
        return {"ui": {"images": [preview], "animated": (True,)}, "result": (host.video_result(path), path)}
