"""Test set-up: import the checkout as the package ``framestream``, and build diffusers oracles.

The checkout is imported by path (as ComfyUI imports a custom-node folder), so
the tests exercise the working tree whatever the folder is called.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if "framestream" not in sys.modules or os.path.dirname(sys.modules["framestream"].__file__) != ROOT:
    spec = importlib.util.spec_from_file_location("framestream", os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules["framestream"] = module
    spec.loader.exec_module(module)

torch.set_num_threads(min(2, torch.get_num_threads()))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oracle import WAN21_SMALL, WAN22_SMALL, diffusers_wan  # noqa: E402


@pytest.fixture(scope="session")
def wan21_pair():
    """(diffusers oracle, our model sharing its weights) for a reduced-width Wan 2.1."""
    from framestream.vae_core import build_wan

    ref = diffusers_wan(WAN21_SMALL)
    return ref, build_wan(ref.state_dict())


@pytest.fixture(scope="session")
def wan22_pair():
    from framestream.vae_core import build_wan

    ref = diffusers_wan(WAN22_SMALL, seed=1)
    return ref, build_wan(ref.state_dict())


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny convs (two threads on a busy two-core machine spin slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
