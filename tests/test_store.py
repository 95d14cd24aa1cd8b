"""The run store: schema, task-independent rows, upgrades, concurrency, read-only access, damaged files,
and PostgreSQL for real (the session's test server, tests/services.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from cli import run_cli
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vbench.errors import VbenchError
from vbench.store import SCHEMA_VERSION, RunKey, Step, open_store

DATA = Path(__file__).parent / "data"


def test_default_location_is_results_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store()
    assert (tmp_path / "results" / "vbench.db").is_file()
    assert store.artifact_dir("checkpoints") == tmp_path / "results" / "checkpoints" / store.store_id
    monkeypatch.setenv("VBENCH_DB", str(tmp_path / "other" / "x.db"))  # a plain path, as --db takes it
    other = open_store()
    assert (tmp_path / "other" / "x.db").is_file() and other.artifact_root == tmp_path / "other"
    assert other.store_id != store.store_id and len(store.store_id) == 16


def test_schema_wal_and_round_trip(tmp_path):
    store = open_store(str(tmp_path / "v.db"))
    assert store.schema_version() == SCHEMA_VERSION
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    run_id = store.start_run(suite="smoke", dataset="smoke", backbone="tiny", seed=3, recipe={"lr": 0.001},
                             recipe_hash="abc", data_id="d1", paper_names=["Tiny"], step_unit="epoch", steps=2)
    store.add_step(run_id, 1, {"train_loss": 2.0, "top1": 10.0}, steps_done=1)
    store.add_step(run_id, 2, {"train_loss": 1.5, "top1": 20.0}, steps_done=2)
    store.add_step(run_id, 2, {"train_loss": 1.25, "top1": 25.0}, steps_done=2)  # replaces
    store.finish_run(run_id, "done", metrics={"top1": 25.0}, wall_time_s=1.5)
    run = store.get_run(run_id)
    assert (run.status, run.metric("top1"), run.steps_done, run.recipe) == ("done", 25.0, 2, {"lr": 0.001})
    assert run.ended_at >= run.started_at and run.owner is None
    assert [(s.step, s.metrics["train_loss"]) for s in store.steps(run_id)] == [(1, 2.0), (2, 1.25)]
    key = RunKey("smoke", "tiny", 3, "abc", "d1")
    assert [r.id for r in store.find_runs(key, ("done",))] == [run_id]
    assert store.find_runs(RunKey("smoke", "tiny", 3, "abc", "other data")) == []
    store.put_evaluation(run_id, "robustness", "fog/3", {"top1": 12.0})
    store.put_evaluation(run_id, "robustness", "fog/3", {"top1": 13.0})  # replaces
    assert [(e.condition, e.metrics) for e in store.evaluations("robustness")] == [("fog/3", {"top1": 13.0})]


def test_unique_step_per_run_and_cascade_delete(tmp_path):
    store = open_store(str(tmp_path / "v.db"))
    keep = store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h")
    gone = store.start_run(suite="s", backbone="b", seed=0, recipe_hash="h")
    for run_id in (keep, gone):
        store.replace_steps(run_id, [(1, {}), (2, {})], steps_done=2)
    with pytest.raises(IntegrityError):
        with Session(store.engine) as session, session.begin():
            session.add(Step(run_id=keep, step=1, metrics={}))
    with store.engine.begin() as connection:  # the foreign key cascades in the database itself
        connection.execute(text("DELETE FROM runs WHERE id = :id"), {"id": gone})
    assert sum(map(len, store.steps_of([keep, gone]).values())) == 2
    store.delete_run(keep)
    assert store.list_runs() == []
    with pytest.raises(VbenchError, match="no run with id 99"):
        store.delete_run(99)


def test_list_filters(tmp_path):
    store = open_store(str(tmp_path / "v.db"))
    for suite, backbone, status in [("a", "x", "done"), ("a", "y", "failed"), ("b", "x", "done")]:
        store.start_run(suite=suite, backbone=backbone, seed=0, recipe_hash="h", status=status)
    assert [(r.suite, r.backbone) for r in store.list_runs(status="done")] == [("a", "x"), ("b", "x")]
    assert [r.backbone for r in store.list_runs(suite="a")] == ["x", "y"]
    assert [r.suite for r in store.list_runs(backbones=["x"], suite="b")] == ["b"]


@pytest.mark.parametrize("make_bad", ["parent_is_file", "directory_as_db"])
def test_unwritable_location_is_one_line_error_and_writes_nothing(tmp_path, make_bad):
    blocker = tmp_path / "blocker"
    if make_bad == "parent_is_file":
        blocker.write_text("not a directory")
        db = str(blocker / "sub" / "v.db")
    else:
        blocker.mkdir()
        db = str(blocker)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(VbenchError) as info:
        open_store(db)
    assert "\n" not in str(info.value) and "--db" in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_reader_does_not_create_a_missing_database(tmp_path):
    with pytest.raises(VbenchError, match="no run store"):
        open_store(str(tmp_path / "missing.db"), write=False)
    assert not (tmp_path / "missing.db").exists()


def _hammer(db: str, worker: int, runs: int, steps: int) -> None:
    store = open_store(db)
    for index in range(runs):
        run_id = store.start_run(suite="s", backbone=f"w{worker}", seed=index, recipe_hash="h")
        for step in range(1, steps + 1):
            store.add_step(run_id, step, {"top1": float(step)}, steps_done=step)
        store.finish_run(run_id, "done", metrics={"top1": float(steps)})


def test_concurrent_writers_lose_no_row(tmp_path):
    db = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("fork")  # the workers only touch the database, not torch
    workers = [context.Process(target=_hammer, args=(db, worker, 8, 10)) for worker in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    store = open_store(db)
    runs = store.list_runs()
    assert len(runs) == 24 and all(r.status == "done" and r.steps_done == 10 for r in runs)
    assert sum(map(len, store.steps_of([r.id for r in runs]).values())) == 240


def _open_and_write(db: str, worker: int, go) -> None:
    go.wait(60)
    store = open_store(db)  # the first use of an empty database, by every process at once
    store.start_run(suite="s", backbone=f"w{worker}", seed=0, recipe_hash="h")


def assert_four_processes_can_start_an_empty_store(db: str) -> None:
    """Four processes use an empty database for the first time at the same moment; every one succeeds."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    processes = [context.Process(target=_open_and_write, args=(db, w, go)) for w in range(4)]
    for process in processes:
        process.start()
    go.set()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * 4
    assert len(open_store(db, write=False).list_runs()) == 4


@pytest.mark.parametrize("repeat", range(3))
def test_concurrent_first_use_of_an_empty_sqlite_file(tmp_path, repeat):
    assert_four_processes_can_start_an_empty_store(str(tmp_path / f"fresh{repeat}.db"))


# --- schema versions: upgrades only when asked, readers never write --------------------------------
def schema2_copy(tmp_path: Path) -> Path:
    """A store written by vbench's schema-2 code (tests/data/schema2.db, see tests/data/README.md)."""
    path = tmp_path / "schema2.db"
    shutil.copy(DATA / "schema2.db", path)
    return path


def test_a_schema_2_store_reports_identically_read_only_and_after_the_upgrade(tmp_path):
    db = schema2_copy(tmp_path)
    before = db.read_bytes()
    read = run_cli("report", "--db", db, "--format", "json")
    assert read.code == 0, read.err
    assert db.read_bytes() == before and not list(tmp_path.glob("schema2.db-*"))  # nothing written
    upgrade = run_cli("db", "upgrade", "--db", db)
    assert upgrade.code == 0 and f"schema version {SCHEMA_VERSION}" in upgrade.out
    after = run_cli("report", "--db", db, "--format", "json")
    assert json.loads(after.out) == json.loads(read.out)
    # the same numbers the schema-2 code reported (tests/data/schema2-report.json)
    old = [json.loads(part) for part in _json_documents((DATA / "schema2-report.json").read_text())]
    new = json.loads(after.out)["sections"]
    old_rows = {r["model"]: r for r in old[0]["suites"][0]["rows"]}
    new_rows = {r["model"]: r for r in new[0]["rows"]}
    for model in old_rows:
        for field in ("n", "acc_mean", "acc_std", "params_m", "flops_m", "seeds"):
            assert new_rows[model][field] == old_rows[model][field], (model, field)
    old_seg = [(r["Backbone"], r["Iteration"], r["aAcc(%)"], r["mIoU(%)"]) for r in old[1]["rows"]]
    new_seg = [(r["model"], r["iteration"], round(r["aAcc"], 2), round(r["mIoU"], 2)) for r in new[1]["rows"]]
    assert new_seg == old_seg
    store = open_store(str(db), write=False)
    runs = store.list_runs()
    assert {r.backbone for r in runs} == {"vit-0.5m", "vit-0.5m-lkca", "lkca-s", "vit-s"}  # -seg names resolved
    assert all(r.step_unit in ("epoch", "iteration") and r.steps_done for r in runs)
    assert sum(map(len, store.steps_of([r.id for r in runs]).values())) == 13  # every epoch row of the old file


def _json_documents(text_: str) -> list[str]:
    """The schema-2 code printed one JSON document per task, back to back."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while text_[index:].strip():
        index += len(text_[index:]) - len(text_[index:].lstrip())
        value, index = decoder.raw_decode(text_, index)
        documents.append(json.dumps(value))
    return documents


def test_reading_commands_never_write(tmp_path):
    db = schema2_copy(tmp_path)
    before = db.read_bytes()
    for command in (["runs"], ["report"], ["db", "check"], ["plot", "--output-dir", tmp_path / "plots"]):
        result = run_cli(*command, "--db", db)
        assert result.code == 0, (command, result.err)
    assert db.read_bytes() == before
    assert sqlite3.connect(db).execute("SELECT max(version) FROM schema_info").fetchone() == (2,)


def test_a_newer_schema_is_refused_before_anything_is_written(tmp_path):
    db = tmp_path / "future.db"
    open_store(str(db)).close()
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO schema_info VALUES (4)")
    connection.close()
    before = sqlite3.connect(db).execute("SELECT version FROM schema_info ORDER BY version").fetchall()
    for write in (True, False):
        with pytest.raises(VbenchError, match="schema version 4, newer than this vbench"):
            open_store(str(db), write=write)
    assert sqlite3.connect(db).execute("SELECT version FROM schema_info ORDER BY version").fetchall() == before


def test_a_read_only_folder_can_be_read(tmp_path):
    folder = tmp_path / "mount"
    folder.mkdir()
    store = open_store(str(folder / "v.db"))
    store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h", status="done", metrics={"top1": 1.0})
    store.close()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    (folder / "v.db").chmod(stat.S_IRUSR)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = run_cli("runs", "--db", folder / "v.db")
        assert result.code == 0 and "1.00" in result.out
    finally:
        folder.chmod(stat.S_IRWXU)


def damage_the_runs_table(db: Path) -> None:
    """Overwrite the b-tree page of the runs table with garbage, as a bad disk sector would."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    connection.close()
    with open(db, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))


def test_a_damaged_database_is_one_line_with_the_recover_hint(tmp_path):
    db = tmp_path / "v.db"
    store = open_store(str(db))
    for seed in range(20):
        store.start_run(suite="s", backbone="a", seed=seed, recipe_hash="h", status="done", metrics={"top1": 1.0})
    store.close()
    damage_the_runs_table(db)
    for command in (["runs"], ["report"], ["db", "check"], ["run", "--suite", "smoke", "--backbones", "vit-0.5m"]):
        result = run_cli(*command, "--db", db)
        assert result.code == 2, (command, result.out, result.err)
        line = result.error_line
        assert str(db) in line and ".recover" in line, line


# --- two stores, one folder: files never cross -----------------------------------------------------
def test_each_store_keeps_its_files_in_its_own_folder(tmp_path):
    first, second = open_store(str(tmp_path / "a.db")), open_store(str(tmp_path / "b.db"))
    assert first.store_id != second.store_id
    assert first.artifact_dir("checkpoints") != second.artifact_dir("checkpoints")
    assert first.artifact_dir("checkpoints").parent == second.artifact_dir("checkpoints").parent


# --- PostgreSQL ------------------------------------------------------------------------------------
def test_postgresql_store(fresh_database, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store(fresh_database)
    assert store.engine.dialect.name == "postgresql"
    assert store.schema_version() == SCHEMA_VERSION
    run_id = store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h", recipe={"lr": 1e-3})
    store.replace_steps(run_id, [(1, {"top1": 5.0}), (2, {"top1": 6.0})], steps_done=2)
    store.finish_run(run_id, "done", metrics={"top1": 6.0}, params=2_692_426, flops=188_837_000_000)
    run = store.get_run(run_id)
    assert (run.status, run.steps_done, run.flops, run.recipe) == ("done", 2, 188_837_000_000, {"lr": 1e-3})
    store.delete_run(run_id)
    assert store.steps(run_id) == []
    assert store.artifact_dir("checkpoints") == tmp_path / "results" / "checkpoints" / store.store_id


def test_concurrent_first_use_of_an_empty_postgresql_database(postgres_url):
    import services

    for _ in range(3):
        database = services.create_database(postgres_url)
        try:
            assert_four_processes_can_start_an_empty_store(database)
        finally:
            services.drop_database(postgres_url, database)


def test_writes_survive_a_postgresql_restart(fresh_database, restart_postgres):
    store = open_store(fresh_database)
    run_id = store.start_run(suite="s", backbone="a", seed=0, recipe_hash="h")
    store.add_step(run_id, 1, {"top1": 1.0}, steps_done=1)
    restart_postgres()  # every pooled connection is now dead
    store.add_step(run_id, 2, {"top1": 2.0}, steps_done=2)
    store.finish_run(run_id, "done", metrics={"top1": 2.0})
    run = store.get_run(run_id)
    assert (run.status, run.steps_done, [s.step for s in store.steps(run_id)]) == ("done", 2, [1, 2])


def test_an_unreachable_server_is_one_line(tmp_path):
    result = run_cli("runs", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert result.code == 2 and "cannot open the run store postgresql://nobody@127.0.0.1:1/none" in result.error_line
