"""pip installs what the repository holds: every Python package folder (a new model family is one) is in the
wheel, found without a list to keep up to date, and the build script itself is not."""

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel here needs setuptools")
def test_the_wheel_holds_every_package_folder_and_not_the_build_script(tmp_path):
    source = tmp_path / "source"  # a copy: the build writes build/ and egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                 ".ruff_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    [wheel] = glob.glob(str(tmp_path / "wheel" / "*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for top in ("nodes", "vae_core"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py") or (name.endswith(".safetensors") and folder.endswith(os.sep + "data")):
                    expected.add("framestream/" + os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/"))
    assert expected - names == set()
    assert "framestream/cli.py" in names and "framestream/setup.py" not in names
