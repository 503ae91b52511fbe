"""Installs the repository's layout under the one import name ``zoo``.

In the repository the command line is the script ``cli.py`` and the architectures are the folder
``adapters/``; installed, they are ``zoo.cli`` and ``zoo.adapters`` (pyproject.toml maps the
packages), so neither takes a top-level import name. A package directory cannot be mapped onto a
single file, so ``zoo.cli`` is listed as a package whose directory is ``cli`` (editable installs
then find ``cli.py`` for it) and this build step writes ``cli.py`` into wheels as ``zoo/cli.py``.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

CLI_MODULE, CLI_FILE = "zoo.cli", "cli.py"
# Installed name -> repository folder.
PACKAGE_DIR = {"zoo.adapters": "adapters", "zoo.configs": "configs", CLI_MODULE: "cli"}
PACKAGES = [*find_packages(include=["zoo", "zoo.*"]),
            *(f"zoo.adapters.{p}" for p in find_packages("adapters")), *PACKAGE_DIR]


class BuildPy(build_py):
    """build_py that ships ``cli.py`` as the module ``zoo.cli``."""

    def finalize_options(self) -> None:
        super().finalize_options()
        # A copy: the distribution's own list still names zoo.cli, which editable installs map.
        self.packages = [p for p in self.packages or [] if p != CLI_MODULE]

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.copy_file(CLI_FILE, str(Path(self.build_lib, "zoo", "cli.py")), preserve_mode=0)

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), CLI_FILE]

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, "zoo", "cli.py"))]


setup(packages=PACKAGES, package_dir=PACKAGE_DIR, cmdclass={"build_py": BuildPy})
