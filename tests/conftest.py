import pytest

from vbench import registry


@pytest.fixture(autouse=True)
def _restore_registry():
    """Backbones a test registers (plugins) do not leak into the next test."""
    registry.load_all()
    before = dict(registry._SPECS)
    yield
    for name in list(registry._SPECS):
        if name not in before:
            registry.unregister_backbone(name)
