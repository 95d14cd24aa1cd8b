"""The real services the other tests build on: PostgreSQL, a one-node SLURM cluster, headless Chromium."""

from __future__ import annotations

import multiprocessing
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from services import console_errors, serve_directory, wait_for

from vbench.store import open_store

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- PostgreSQL -----------------------------------------------------------------------------------
def test_postgres_store_round_trip(fresh_database):
    store = open_store(fresh_database)
    assert store.engine.dialect.name == "postgresql"
    run_id = store.start_run(suite="smoke", backbone="vit-0.5m", seed=1, recipe_hash="h", recipe={"lr": 1e-3})
    store.finish_run(run_id, "done", metrics={"top1": 42.5}, flops=188_837_000_000)
    store.close()
    runs = open_store(fresh_database).list_runs()
    assert [(r.id, r.backbone, r.status, r.metrics["top1"], r.flops, r.recipe) for r in runs] == [
        (run_id, "vit-0.5m", "done", 42.5, 188_837_000_000, {"lr": 1e-3})
    ]


def test_fresh_databases_are_empty_and_separate(postgres_url, fresh_database):
    other = open_store(fresh_database)
    other.start_run(suite="s", backbone="b", seed=0, recipe_hash="h")
    assert fresh_database != postgres_url and other.list_runs()
    import services

    second = services.create_database(postgres_url)
    try:
        assert open_store(second).list_runs() == []
    finally:
        services.drop_database(postgres_url, second)


def _add_runs(url: str, worker: int, runs: int, go) -> None:
    go.wait(60)
    store = open_store(url)  # every worker races to create the schema too, as parallel sweep jobs do
    for index in range(runs):
        run_id = store.start_run(suite="s", backbone=f"w{worker}", seed=index, recipe_hash="h")
        store.add_step(run_id, 1, {"top1": float(index)}, steps_done=1)
        store.finish_run(run_id, "done", metrics={"top1": float(index)})


def test_four_concurrent_writer_processes_lose_no_row(fresh_database):
    workers, runs = 4, 25
    context = multiprocessing.get_context("fork")  # the workers only touch the database, not torch
    go = context.Event()
    processes = [context.Process(target=_add_runs, args=(fresh_database, w, runs, go)) for w in range(workers)]
    for process in processes:
        process.start()
    go.set()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * workers
    store = open_store(fresh_database)
    rows = store.list_runs()
    assert sorted((r.backbone, r.seed) for r in rows) == sorted((f"w{w}", i) for w in range(workers) for i in range(runs))
    assert all(r.status == "done" for r in rows) and sum(len(steps) for steps in store.steps_of([r.id for r in rows]).values()) == workers * runs


def test_restart_postgres_breaks_connections_and_the_server_comes_back(fresh_database, restart_postgres):
    import psycopg2

    connection = psycopg2.connect(fresh_database)
    restart_postgres()
    with pytest.raises(psycopg2.OperationalError):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    connection.close()
    assert open_store(fresh_database).list_runs() == []


# --- SLURM ----------------------------------------------------------------------------------------
def test_sbatch_job_runs_on_the_node(slurm_cluster, tmp_path):
    marker = tmp_path / "ran.txt"
    job_id = slurm_cluster.command(
        "sbatch", "--parsable", f"--output={tmp_path / 'job.out'}", f"--chdir={tmp_path}",
        "--wrap", f"echo $SLURM_JOB_ID $(hostname) > {marker}",
    ).stdout.strip().split(";")[0]
    assert slurm_cluster.wait_jobs([job_id]) == {job_id: "COMPLETED"}
    assert marker.read_text().split() == [job_id, os.uname().nodename]


def test_scancel_kills_a_running_job(slurm_cluster, tmp_path):
    pid_file = tmp_path / "job.pid"
    job_id = slurm_cluster.command(
        "sbatch", "--parsable", f"--output={tmp_path / 'job.out'}", "--wrap", f"echo $$ > {pid_file}; exec sleep 300",
    ).stdout.strip().split(";")[0]
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 60, "the job to start")
    pid = int(pid_file.read_text())
    assert slurm_cluster.job_state(job_id) == "RUNNING"
    slurm_cluster.command("scancel", job_id)
    wait_for(lambda: slurm_cluster.job_state(job_id) == "CANCELLED", 30, "the job to be cancelled")
    import services

    wait_for(lambda: not services.process_alive(pid), 30, "the job's process to be killed")


def test_slurm_jobs_write_runs_into_one_postgres_database(slurm_cluster, fresh_database, tmp_path):
    """A sweep's shape: parallel batch jobs, each writing its runs into one shared PostgreSQL store."""
    jobs = 2  # one per core of a 2-core CI machine; each job pays the torch import of `import vbench`
    script = tmp_path / "write_runs.py"
    script.write_text(
        "import os, sys\n"
        "from vbench.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "for seed in range(5):\n"
        "    run = store.start_run(suite='sweep', backbone='job' + os.environ['SLURM_ARRAY_TASK_ID'], seed=seed, recipe_hash='h')\n"
        "    store.finish_run(run, 'done')\n"
    )
    command = shlex.join([sys.executable, str(script), fresh_database])
    job_id = slurm_cluster.command(
        "sbatch", "--parsable", f"--array=0-{jobs - 1}", f"--output={tmp_path / 'job-%a.out'}",
        f"--export=ALL,PYTHONPATH={REPO_ROOT}", "--wrap", command,
    ).stdout.strip().split(";")[0]
    states = slurm_cluster.wait_jobs([job_id], timeout=180)
    outputs = "".join(path.read_text() for path in tmp_path.glob("job-*.out"))
    rows = open_store(fresh_database).list_runs(suite="sweep")
    assert states == {job_id: "COMPLETED"}, outputs
    assert sorted((r.backbone, r.seed) for r in rows) == sorted((f"job{j}", s) for j in range(jobs) for s in range(5))


# --- Chromium -------------------------------------------------------------------------------------
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>vbench check</title><link rel="icon" href="data:,">
<style>body { background: rgb(0, 128, 255); margin: 0; }</style>
<script src="{script}"></script></head>
<body><button id="go">go</button><p id="out">not clicked</p></body></html>
"""
SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("go").addEventListener("click", () => {
    document.getElementById("out").textContent = "clicked " + (window.location.protocol);
    console.log("vbench clicked");
  });
});
"""


def _write_page(directory: Path, script: str = SCRIPT) -> Path:
    (directory / "app.js").write_text(script)
    page = directory / "index.html"
    page.write_text(PAGE.replace("{script}", "app.js"))
    return page


def _click_and_check(chrome, expected_protocol: str, screenshot: Path) -> None:
    from selenium.webdriver.common.by import By

    chrome.find_element(By.ID, "go").click()
    assert chrome.find_element(By.ID, "out").text == f"clicked {expected_protocol}"
    logs = chrome.get_log("browser")
    assert any("vbench clicked" in entry["message"] for entry in logs), logs
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert chrome.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.width >= 400
        assert image.convert("RGB").getpixel((image.width - 5, image.height - 5)) == (0, 128, 255)


def test_chrome_opens_a_local_file(chrome, tmp_path):
    page = _write_page(tmp_path)
    chrome.get(page.as_uri())
    assert chrome.title == "vbench check"
    _click_and_check(chrome, "file:", tmp_path / "file.png")


def test_chrome_opens_a_page_served_over_http(chrome, tmp_path):
    _write_page(tmp_path)
    with serve_directory(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        chrome.get(base_url + "index.html")
        _click_and_check(chrome, "http:", tmp_path / "http.png")


def test_chrome_console_errors_are_seen(chrome, tmp_path):
    """The console check can fail: a script error and a missing file both show up as SEVERE entries."""
    _write_page(tmp_path, script='throw new Error("vbench boom");')
    (tmp_path / "index.html").write_text((tmp_path / "index.html").read_text() + '<img src="missing.png">')
    with serve_directory(tmp_path) as base_url:
        chrome.get(base_url + "index.html")
        deadline = time.monotonic() + 10
        errors = []
        while time.monotonic() < deadline and len(errors) < 2:
            errors += console_errors(chrome)
            time.sleep(0.1)
    messages = " ".join(entry["message"] for entry in errors)
    assert "vbench boom" in messages and "missing.png" in messages


# --- the skip/fail rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("ci, outcome", [("", "1 skipped"), ("1", "1 failed")])
def test_a_missing_service_skips_with_one_line_but_fails_in_ci(tmp_path, ci, outcome):
    (tmp_path / "test_needs_service.py").write_text(
        "import services\n\n"
        "def test_needs_it():\n"
        "    services.service_unavailable('no frobnicator binaries (apt-get install frobnicator)')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "VBENCH_CI": ci, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "no frobnicator binaries (apt-get install frobnicator)" in result.stdout
