import pytest
import torch

# Real local services (PostgreSQL, SLURM, headless Chromium): see tests/services.py.
from services import chrome, fresh_database, postgres_server, postgres_url, restart_postgres, slurm_cluster  # noqa: F401

from vbench.models import registry


@pytest.fixture(autouse=True)
def _restore_registry():
    """Backbones a test registers (plugins) do not leak into the next test."""
    registry.load_all()
    before = {name: dict(spec.variants) for name, spec in registry.BACKBONES.items()}
    yield
    for name in registry.BACKBONES.names():
        if name not in before:
            registry.unregister_backbone(name)
        else:
            registry.BACKBONES.find(name).variants = before[name]


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """Batch-2 passes through small models gain nothing from intra-op threads, and on a busy 2-core
    machine their spin-waiting made the suite several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _private_caches(tmp_path_factory, monkeypatch):
    """Measurement caches and default stores never touch the user's folders."""
    monkeypatch.setenv("VBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "vbench-cache"))
    monkeypatch.delenv("VBENCH_DB", raising=False)
    monkeypatch.delenv("VBENCH_ARTIFACTS", raising=False)
