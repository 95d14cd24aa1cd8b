"""`torchrun --nproc-per-node 2 -m vbench run ...` on the CPU (gloo): one run, the single-process training up to
rounding (a BatchNorm model: SyncBatchNorm over the global batch), each process on its share, and resume after
the processes are killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import readme
import torch
from cli import REPO, run_cli
from plugins import FAST, write_plugin
from services import process_alive, wait_for

from vbench.data.fixtures import write_fixture
from vbench.engine.distributed import Distributed
from vbench.errors import VbenchError
from vbench.store import open_store
from vbench.store.artifacts import weights_path

BATCH = 20  # 80 training images: 4 steps an epoch, 10 images a process


@pytest.fixture
def setup(tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=16, num_test=40)
    command = ["run", "--suite", "cifar10", "--backbones", "tiny-bn", "--plugin", write_plugin(tmp_path),
               "--data-root", fixture.root, "--batch-size", BATCH, *FAST]
    return command


def torchrun(*args, env: dict | None = None, nproc: int = 2) -> subprocess.Popen:
    """``torchrun --nproc-per-node N -m vbench ...`` (stdout and stderr merged), one thread per process."""
    return launch("--nproc-per-node", nproc, "-m", "vbench", *args, env=env)


def launch(*torchrun_args, env: dict | None = None) -> subprocess.Popen:
    launcher = [shutil.which("torchrun")] if shutil.which("torchrun") else [sys.executable, "-m", "torch.distributed.run"]
    environment = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   **{key: str(value) for key, value in (env or {}).items()}}
    return subprocess.Popen([*launcher, "--standalone", *map(str, torchrun_args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)


def finished(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def final_weights(db: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    store = open_store(str(db), write=False)
    [run] = store.list_runs()
    return load_file(weights_path(store, run.id))


def assert_same_weights(expected: dict, actual: dict, rtol: float = 1e-4) -> None:
    """Each float tensor within ``rtol`` of the expected one, relative to its norm."""
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        if tensor.is_floating_point():
            difference = (actual[name].double() - tensor.double()).norm() / tensor.double().norm().clamp_min(1e-12)
            assert difference <= rtol, f"{name}: relative difference {float(difference):.2e}"
        else:
            assert torch.equal(actual[name], tensor), name


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_two_processes_train_the_single_process_run(setup, tmp_path):
    batches = tmp_path / "batches"
    process = torchrun(*setup, "--epochs", 1, "--db", tmp_path / "dist.db", env={"VBENCH_TEST_BATCH_LOG": batches})
    single = run_cli(*setup, "--epochs", 1, "--db", tmp_path / "single.db")
    code, out = finished(process)
    assert code == 0 and single.code == 0, out + single.out + single.err
    assert out.count("vbench run: cifar10") == 1  # rank 0 alone reports
    store = open_store(str(tmp_path / "dist.db"), write=False)
    [run] = store.list_runs()  # exactly one run, written by rank 0
    assert (run.status, run.steps_done, run.settings["world_size"]) == ("done", 1, 2)
    [step] = store.steps(run.id)
    assert step.metrics["images_per_s"] * step.metrics["time_s"] == pytest.approx(80)  # global throughput
    shares = [path.read_text().split() for path in sorted(tmp_path.glob("batches.*"))]
    assert shares == [[str(BATCH // 2)] * 4] * 2  # two processes, each half of every global batch
    assert_same_weights(final_weights(tmp_path / "single.db"), final_weights(tmp_path / "dist.db"))
    assert run.metrics == open_store(str(tmp_path / "single.db"), write=False).list_runs()[0].metrics


def test_killed_distributed_run_resumes_from_its_checkpoint(setup, tmp_path):
    db = tmp_path / "dist.db"
    flag = tmp_path / "hang"
    hang = {"VBENCH_TEST_HANG_AFTER": 5, "VBENCH_TEST_HANG_FLAG": flag}  # epoch 2's first step, once
    process = torchrun(*setup, "--epochs", 2, "--db", db, env=hang)
    try:
        wait_for(flag.exists, 180, "the distributed run to reach its second epoch")
        workers = children_of(process.pid)
        assert len(workers) == 2
        for pid in workers:  # as the OOM killer or a lost node would
            os.kill(pid, signal.SIGKILL)
        finished(process, timeout=60)  # torchrun sees its workers die, and reaps them
        assert not any(process_alive(pid) for pid in workers)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [run] = open_store(str(db), write=False).list_runs()
    assert (run.status, run.steps_done) == ("running", 1)
    code, out = finished(torchrun(*setup, "--epochs", 2, "--db", db, env=hang))
    assert code == 0, out
    assert f"resuming run {run.id} from its checkpoint after epoch 1" in out
    store = open_store(str(db), write=False)
    [resumed] = store.list_runs()
    assert (resumed.id, resumed.status, [s.step for s in store.steps(run.id)]) == (run.id, "done", [1, 2])
    single = run_cli(*setup, "--epochs", 2, "--db", tmp_path / "single.db")
    assert single.code == 0, single.out + single.err
    assert_same_weights(final_weights(tmp_path / "single.db"), final_weights(db))


def test_the_readme_command_trains_lkca_t_over_four_processes(tmp_path):
    """The README's torchrun command ("## Scaling out"): 4 processes, on the CIFAR-10 fixture, one epoch."""
    [command] = readme.commands("## Scaling out", program="torchrun")
    assert command[:4] == ["--nproc-per-node", "4", "-m", "vbench"] and "lkca-t" in command
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    index = command.index("--data-root")
    command[index + 1] = fixture.root
    db = tmp_path / "dist.db"
    code, out = finished(launch(*command, "--db", db, "--epochs", 1, "--limit", 40, "--batch-size", 20, *FAST))
    assert code == 0, out
    [run] = open_store(str(db), write=False).list_runs()
    assert (run.backbone, run.status, run.steps_done, run.settings["world_size"]) == ("lkca-t", "done", 1, 4)


def test_a_batch_that_does_not_split_over_the_processes_is_one_error():
    with pytest.raises(VbenchError, match="multiple of 4"):
        Distributed(rank=0, world_size=4).check_batch_size(30)
    sharded = Distributed(rank=1, world_size=2).shard((torch.arange(6), torch.arange(6) * 10, 0.5))
    assert [part.tolist() if torch.is_tensor(part) else part for part in sharded] == [[3, 4, 5], [30, 40, 50], 0.5]
