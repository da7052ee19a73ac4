"""This checkout as the package ``framestream``, for the processes tests start (conftest.py does not run there):
they must test the working tree, installed or not, whatever the folder is called.

``python tests/checkout.py ARGS`` (:data:`COMMAND`; torchrun takes :data:`SCRIPT`) is ``python -m framestream
ARGS`` on this checkout. A ``torch.multiprocessing.spawn`` target runs through :func:`spawned`, which loads the
checkout before it imports the target's test module.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.abspath(__file__)
COMMAND = [sys.executable, SCRIPT]  # python -m framestream


def load() -> None:
    """Import the checkout as ``framestream`` by path, as conftest.py (and ComfyUI, for a custom-node folder) does."""
    if "framestream" not in sys.modules or os.path.dirname(sys.modules["framestream"].__file__) != ROOT:
        spec = importlib.util.spec_from_file_location("framestream", os.path.join(ROOT, "__init__.py"),
                                                      submodule_search_locations=[ROOT])
        module = importlib.util.module_from_spec(spec)
        sys.modules["framestream"] = module
        spec.loader.exec_module(module)


def spawned(rank: int, module: str, function: str, *args) -> None:
    """``module.function(rank, *args)`` in a spawned process, whose fresh interpreter has not loaded the checkout."""
    load()
    getattr(importlib.import_module(module), function)(rank, *args)


if __name__ == "__main__":
    load()
    sys.path[0] = os.getcwd()  # as ``python -m`` has it, not this folder
    runpy.run_module("framestream", run_name="__main__", alter_sys=True)
