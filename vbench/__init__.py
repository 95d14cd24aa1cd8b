"""vbench: an honest, fast benchmark harness for compact vision backbones."""

__version__ = "0.1.0"

from vbench.registry import create_backbone, list_backbones, register_backbone  # noqa: E402

__all__ = ["__version__", "create_backbone", "list_backbones", "register_backbone"]
