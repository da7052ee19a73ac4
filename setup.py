"""Only the package list, found from the folders; pyproject.toml holds everything else. The repository root is
the package ``framestream`` (ComfyUI imports the cloned folder), so setuptools' own discovery cannot name the
packages: a new model family is one folder, with nothing to add here."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def packages() -> list[str]:
    found = ["framestream"]
    for top in ("nodes", "vae_core"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files or os.path.basename(folder) == "data":
                found.append("framestream." + os.path.relpath(folder, ROOT).replace(os.sep, "."))
    return sorted(found)


class BuildPy(build_py):
    """The package's modules, without this file (it lies in the package's folder, the repository root)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [module for module in modules if (module[0], module[1]) != ("framestream", "setup")]


setup(packages=packages(), cmdclass={"build_py": BuildPy})
