"""The run store: schema, WAL, cascade, concurrency-safe writes, bad locations, PostgreSQL when available."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from vbench.errors import VbenchError
from vbench.store import SCHEMA_VERSION, Epoch, RunKey, open_store


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_default_location_is_results_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VBENCH_DB", raising=False)
    store = open_store()
    assert (tmp_path / "results" / "vbench.db").is_file()
    assert store.checkpoint_dir == tmp_path / "results" / "checkpoints"
    monkeypatch.setenv("VBENCH_DB", sqlite_url(tmp_path / "other" / "x.db"))
    assert open_store().checkpoint_dir == tmp_path / "other" / "checkpoints"
    assert (tmp_path / "other" / "x.db").is_file()


def test_schema_wal_and_round_trip(tmp_path):
    store = open_store(sqlite_url(tmp_path / "v.db"))
    assert store.schema_version() == SCHEMA_VERSION
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    run_id = store.start_run(suite="smoke", dataset="smoke", backbone="tiny", seed=3, recipe={"lr": 0.001},
                             recipe_hash="abc", paper_names=["Tiny"], metrics={"mIoU": 12.5})
    store.add_epoch(run_id, {"epoch": 1, "train_loss": 2.0, "top1": 10.0}, epochs_done=1, top1=10.0)
    store.add_epoch(run_id, {"epoch": 2, "train_loss": 1.5, "top1": 20.0}, epochs_done=2, top1=20.0)
    store.add_epoch(run_id, {"epoch": 2, "train_loss": 1.25, "top1": 25.0}, epochs_done=2, top1=25.0)  # replaces
    store.finish_run(run_id, "done", wall_time_s=1.5)
    run = store.get_run(run_id)
    assert (run.status, run.top1, run.epochs_done, run.recipe, run.metrics) == ("done", 25.0, 2, {"lr": 0.001}, {"mIoU": 12.5})
    assert run.ended_at >= run.started_at
    assert [(e.epoch, e.train_loss) for e in store.epochs(run_id)] == [(1, 2.0), (2, 1.25)]
    key = RunKey("smoke", "tiny", 3, "abc")
    assert [r.id for r in store.find_runs(key, ("done",))] == [run_id]
    assert store.find_runs(key, ("running",)) == []
    assert store.find_runs(RunKey("smoke", "tiny", 4, "abc")) == []


def test_unique_epoch_per_run_and_cascade_delete(tmp_path):
    store = open_store(sqlite_url(tmp_path / "v.db"))
    keep = store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h")
    gone = store.start_run(suite="s", backbone="b", seed=0, recipe_hash="h")
    for run_id in (keep, gone):
        store.replace_epochs(run_id, [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}])
    with pytest.raises(IntegrityError):
        store._write(lambda session: session.add(Epoch(run_id=keep, epoch=1)))
    # the foreign key cascades in the database itself, not only through the ORM
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM runs WHERE id = :id"), {"id": gone})
    assert store.count_epochs() == 3
    store.delete_run(keep)
    assert store.count_epochs() == 0 and store.list_runs() == []
    with pytest.raises(VbenchError, match="no run with id 99"):
        store.delete_run(99)


def test_list_filters(tmp_path):
    store = open_store(sqlite_url(tmp_path / "v.db"))
    for suite, backbone, status in [("a", "x", "done"), ("a", "y", "failed"), ("b", "x", "done")]:
        store.start_run(suite=suite, backbone=backbone, seed=0, recipe_hash="h", status=status)
    assert [(r.suite, r.backbone) for r in store.list_runs(status="done")] == [("a", "x"), ("b", "x")]
    assert [r.backbone for r in store.list_runs(suite="a")] == ["x", "y"]
    assert [r.suite for r in store.list_runs(backbone="x", suite="b")] == ["b"]


@pytest.mark.parametrize("make_bad", ["parent_is_file", "directory_as_db"])
def test_unwritable_location_is_one_line_error_and_writes_nothing(tmp_path, make_bad):
    blocker = tmp_path / "blocker"
    if make_bad == "parent_is_file":
        blocker.write_text("not a directory")
        url = sqlite_url(blocker / "sub" / "v.db")
    else:
        blocker.mkdir()
        url = sqlite_url(blocker)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(VbenchError) as info:
        open_store(url)
    assert "\n" not in str(info.value) and "--db" in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_reader_does_not_create_a_missing_database(tmp_path):
    with pytest.raises(VbenchError, match="no run store"):
        open_store(sqlite_url(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()


def _hammer(url: str, worker: int, runs: int, epochs: int) -> None:
    store = open_store(url)
    for index in range(runs):
        run_id = store.start_run(suite="s", backbone=f"w{worker}", seed=index, recipe_hash="h")
        for epoch in range(1, epochs + 1):
            store.add_epoch(run_id, {"epoch": epoch, "top1": float(epoch)}, epochs_done=epoch)
        store.finish_run(run_id, "done", top1=float(epochs))


def test_concurrent_writers_lose_no_row(tmp_path):
    url = sqlite_url(tmp_path / "shared.db")
    context = multiprocessing.get_context("fork")  # the workers only touch the database, not torch
    workers = [context.Process(target=_hammer, args=(url, worker, 8, 10)) for worker in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    store = open_store(url)
    runs = store.list_runs()
    assert len(runs) == 24 and all(r.status == "done" and r.epochs_done == 10 for r in runs)
    assert store.count_epochs() == 240


# --- PostgreSQL: the session's test server (tests/services.py) ------------------------------------
def test_postgresql_store(fresh_database):
    store = open_store(fresh_database)
    assert store.engine.dialect.name == "postgresql"
    assert store.schema_version() == SCHEMA_VERSION
    run_id = store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h", recipe={"lr": 1e-3})
    store.replace_epochs(run_id, [{"epoch": 1, "top1": 5.0}, {"epoch": 2, "top1": 6.0}], epochs_done=2)
    store.finish_run(run_id, "done", top1=6.0, params=2_692_426, flops=188_837_000_000)
    run = store.get_run(run_id)
    assert (run.status, run.epochs_done, run.flops, run.recipe) == ("done", 2, 188_837_000_000, {"lr": 1e-3})
    store.delete_run(run_id)
    assert store.count_epochs() == 0
    assert store.checkpoint_dir == Path.cwd() / "results" / "checkpoints"
