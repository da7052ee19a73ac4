"""FrameStream: streaming video VAE nodes for ComfyUI, also a plain library and the ``framestream`` command.

ComfyUI imports this folder as a package and calls ``comfy_entrypoint`` for its V3 nodes; the web extension in
``js/`` is served from ``WEB_DIRECTORY``. Importing the package loads no node module (the library and the CLI
do not need them).
"""

__version__ = "0.1.0"
WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    """The host's V3 entry point: the extension that lists FrameStream's nodes."""
    from .nodes import FrameStreamExtension

    return FrameStreamExtension()


__all__ = ["WEB_DIRECTORY", "__version__", "comfy_entrypoint"]
