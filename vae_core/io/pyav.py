"""PyAV, imported only when a media file is touched (the rest of FrameStream works without it), and opening a
file with one clear error for each way it can fail."""

from __future__ import annotations

import os

from ..errors import FrameStreamError
from .files import check_readable


def load_av():
    try:
        import av
    except ImportError:
        raise FrameStreamError("video files need PyAV: pip install av (ComfyUI already ships it)") from None
    return av


def open_media(path: str, what: str = "video file", expected: str = "a video such as .mp4, .mkv, .mov or .webm"):
    """The opened container, or one error saying why ``path`` cannot be read and what was expected."""
    if not os.path.exists(path):
        raise FrameStreamError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise FrameStreamError(f"{what} {path} is a folder; expected {expected}")
    check_readable(path)  # the permission
    av = load_av()
    try:
        return av.open(path)
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or err
        raise FrameStreamError(f"{path} is not a readable {what} ({reason}); expected {expected}") from None
