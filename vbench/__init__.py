"""vbench: an honest, fast benchmark harness for compact vision backbones."""

import importlib.util
import sys

__version__ = "0.1.0"


def _mount_backbones() -> None:
    """The built-in model families are the package ``vbench.backbones``: the repository's top-level
    ``backbones/`` folder (installed as ``vbench/backbones``), imported by its location beside vbench so that
    no ``backbones`` folder or package elsewhere on ``sys.path`` can stand in for it."""
    # lazy: before any vbench module: it locates the backbones folder
    from vbench.paths import bundled_folder

    folder = bundled_folder("backbones", "backbones")
    spec = importlib.util.spec_from_file_location(f"{__name__}.backbones", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_mount_backbones()

from vbench.models.registry import create_backbone, list_backbones, register_backbone  # noqa: E402

__all__ = ["__version__", "create_backbone", "list_backbones", "register_backbone"]
