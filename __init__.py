"""FrameStream: streaming video VAE nodes for ComfyUI, also a plain library and the ``framestream`` command.

ComfyUI imports this folder as a package and reads the two mappings below.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__version__ = "0.1.0"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "__version__"]
