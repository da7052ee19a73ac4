"""pip installs what the repository holds: every Python package folder is in pyproject's package list (a
folder left out imports in a git clone but not from a wheel)."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_folder_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {"framestream"}
    for top in ("nodes", "vae_core"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files or folder.endswith(os.sep + "data"):
                found.add("framestream." + os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert found - listed == set()
