"""FrameStreamDecodeToVideo: decode straight into a video file, so no frame of a long video is kept in RAM."""

from __future__ import annotations

import json
import os

from ..vae_core.errors import FrameStreamError
from ..vae_core.io.audio import check_sound
from ..vae_core.io.files import numbered_output, write_latent
from ..vae_core.io.video import VideoFileSink
from ..vae_core.streaming import engine
from . import host
from .decode import SIZED_FROM_FRAME, decode_inputs, frames_per_step_input, segment_inputs, segments_sink
from .host import io
from .registry import register
from .tiling_inputs import tile_inputs
from .vae_input import prepare_decode, video_latent

# codec choice -> (file suffix, lossless)
CODECS = {"h264": (".mp4", False), "h264 lossless (RGB)": (".mp4", True), "vp9 (webm)": (".webm", False)}
SAVE_LATENT = ("auto", "on", "off")
SAVE_LATENT_FROM_FRAMES = 241  # auto: keep the latent of videos this long or longer (10 s at 24 fps)


def _sound(audio):
    """The AUDIO input as a sound for the file, or None when it is not connected."""
    if audio is None:
        return None
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise FrameStreamError(f"the audio input is a {type(audio).__name__}, not the host's AUDIO (waveform and "
                               "sample_rate); connect a Load Audio or another AUDIO output")
    return check_sound(audio["waveform"], audio["sample_rate"], "the audio input")


def _keep_latent(path: str, samples: dict, prompt) -> str:
    """Writes the whole LATENT beside the video before decoding, so a failed decode loses no sampling: the
    video part where Load Latent reads it, the other parts of an audio+video latent beside it."""
    latent, nested = video_latent(samples)
    parts = {f"framestream_part_{i}": part for i, part in enumerate(samples["samples"].unbind()[1:], 1)} \
        if nested else {}
    metadata = {"prompt": json.dumps(prompt)} if prompt is not None else None
    latent_path = os.path.splitext(path)[0] + ".latent"
    write_latent(latent_path, latent, parts, metadata)
    return latent_path


@register
class FrameStreamDecodeToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamDecodeToVideo",
            display_name="FrameStream Decode to Video File",
            category="FrameStream",
            description=(
                "Decodes a video latent and writes each frame to a video file as soon as it is decoded, with the "
                "sound beside it when audio is connected: RAM stays flat however long the video. Interrupted or "
                "failed runs leave no partial file; the latent can be kept beside it first."),
            is_output_node=True,
            inputs=[
                *decode_inputs(),
                io.Float.Input("fps", default=16.0, min=1.0, max=240.0, step=1.0,
                               tooltip="Frame rate of the file (Wan 2.1 makes 16 fps video, Wan 2.2 5B 24)."),
                io.String.Input("filename_prefix", default="FrameStream/video",
                                tooltip="File name inside the output folder; may contain subfolders, never '..' "
                                        "or an absolute path."),
                io.Combo.Input("codec", options=list(CODECS), default="h264", tooltip=(
                    "h264: an .mp4 every player opens. Lossless: exact 8-bit RGB in an .mp4, large, not playable "
                    "in browsers. vp9: a .webm (sound as Opus).")),
                io.Int.Input("crf", default=19, min=0, max=51,
                             tooltip="Quality: lower is better and larger; 17-23 is typical for h264."),
                frames_per_step_input(),
                *tile_inputs(),
                *segment_inputs(),
                io.Audio.Input("audio", optional=True, tooltip=(
                    "A sound to put in the file (from Load Audio, an audio VAE decode, Encode Video File ...): "
                    "AAC (Opus in webm), as long as the sound. The frames are the same with or without it.")),
                io.Combo.Input("save_latent", options=list(SAVE_LATENT), default="auto", optional=True, tooltip=(
                    f"Write the latent beside the video (same name, .latent, readable by Load Latent once moved "
                    f"to the input folder) before decoding starts, so a failed decode loses no sampling. auto: for "
                    f"videos of {SAVE_LATENT_FROM_FRAMES} frames or more.")),
            ],
            outputs=[
                io.Video.Output(display_name="video",
                                tooltip="The written video (Save Video, previews and other VIDEO inputs take it)."),
                io.String.Output(display_name="path", tooltip="The file's full path."),
            ],
        )

    @classmethod
    def execute(cls, vae, samples, fps, filename_prefix, codec, crf, frames_per_step=SIZED_FROM_FRAME,
                segment_overlap=0, crossfade=False, audio=None, save_latent="auto", **tiling):
        suffix, lossless = CODECS[codec]
        sound = _sound(audio)
        root = host.output_directory()
        path = numbered_output(root, filename_prefix, suffix)
        sink = VideoFileSink(path, fps, crf=crf, lossless=lossless, sound=sound)
        sink = segments_sink(sink, segment_overlap, crossfade)
        job = prepare_decode(vae, samples, frames_per_step or None, tiling, sink)
        if save_latent == "on" or (save_latent == "auto" and job.frames >= SAVE_LATENT_FROM_FRAMES):
            _keep_latent(path, samples, cls.hidden.prompt if cls.hidden is not None else None)
        engine.decode(job.model, job.latent, sink=sink, settings=job.settings, plan=job.plan)
        folder, name = os.path.split(os.path.relpath(path, root))
        preview = {"filename": name, "subfolder": folder, "type": "output"}
        return io.NodeOutput(host.video_result(path), path, ui={"images": [preview], "animated": (True,)})
