"""Streamed data: shards and their manifest (``vbench data shards|check``), the streaming loader's order (ranks,
workers, (seed, epoch)), exact-once evaluation over 1, 2 and 3 processes, corrupt images skipped and counted,
and bad shards refused in one line."""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import run_cli
from PIL import Image

from vbench.data.fixtures import truncate_file, write_image_folder, write_image_folder_suite
from vbench.data.readers import open_data
from vbench.data.shards import MANIFEST, read_manifest
from vbench.data.stream import Streamer, TrainOrder
from vbench.store import open_store
from vbench.suites import load_suite

WORKERS0 = {"VBENCH_DATA_WORKERS": "0"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A 3-class PNG image folder (8 train, 5 test images a class, 16 px) and its shards of 5 images."""
    folder = tmp_path_factory.mktemp("stream")
    fixture = write_image_folder(folder / "images", classes=("ant", "bee", "cat"), train_per_class=8,
                                 test_per_class=5, img_size=16)
    written = run_cli("data", "shards", fixture.root, "--output", folder / "shards", "--shard-size", "5")
    assert written.code == 0, written.err
    suite = write_image_folder_suite(folder / "streamed.toml", folder / "shards", num_classes=3, img_size=16,
                                     batch_size=6, repeats=1, autoaugment="none", eval_batch_size=4)
    return fixture, folder / "shards", suite


def _suite(path, **recipe):
    return load_suite(str(path)).with_recipe(**recipe) if recipe else load_suite(str(path))


def test_shards_hold_every_image_with_its_label_and_the_manifest_counts_them(shards):
    fixture, folder, suite_file = shards
    manifest = read_manifest(folder)
    assert manifest.classes == ["ant", "bee", "cat"]
    assert {split: info.count for split, info in manifest.splits.items()} == {"train": 24, "test": 15}
    assert manifest.splits["train"].per_class == [8, 8, 8] and manifest.splits["test"].per_class == [5, 5, 5]
    assert [len(info.shards) for info in manifest.splits.values()] == [5, 3]
    checked = run_cli("data", "check", folder)
    assert checked.code == 0 and "ok (8 shards, 24 train, 15 test images, 3 classes" in checked.out, checked.out
    # the test split read back in index order is the folder's, pixel for pixel (PNG is lossless)
    streamer = Streamer(*_splits(suite_file), _suite(suite_file), torch.device("cpu"), workers=0)
    images, labels, indices = _eval_all(streamer)
    assert indices.tolist() == list(range(15))
    assert np.array_equal(labels.numpy(), fixture.test_labels)
    mean, std = torch.tensor([0.5] * 3).view(1, 3, 1, 1), torch.tensor([0.25] * 3).view(1, 3, 1, 1)
    pixels = (images * std + mean) * 255
    assert torch.allclose(pixels, torch.from_numpy(fixture.test_images).float(), atol=1e-3)


def _splits(suite_file):
    _, data = open_data(_suite(suite_file))
    return data.train, data.test


def _eval_all(streamer):
    xs, ys, indices = [], [], []
    for x, y, index in streamer.eval_batches():
        xs.append(x)
        ys.append(y)
        indices.append(index)
    return torch.cat(xs), torch.cat(ys), torch.cat(indices)


def test_writing_the_same_source_twice_gives_the_same_shards_and_identity(shards, tmp_path):
    fixture, folder, _ = shards
    again = run_cli("data", "shards", fixture.root, "--output", tmp_path / "again", "--shard-size", "5")
    assert again.code == 0, again.err
    assert read_manifest(tmp_path / "again").identity == read_manifest(folder).identity
    taken = run_cli("data", "shards", fixture.root, "--output", tmp_path / "again")
    assert taken.code == 2 and "exists and is not an empty folder" in taken.error_line


def test_training_batches_are_a_function_of_seed_and_epoch_and_ranks_take_equal_steps(shards):
    _, _, suite_file = shards
    suite = _suite(suite_file, batch_size=6, repeats=2)
    train, test = _splits(suite_file)

    def epoch(seed, number, rank=0, world=1, workers=0):
        streamer = Streamer(train, test, suite, torch.device("cpu"), workers=workers, rank=rank, world_size=world)
        return [(b.x, b.y_a) for b in streamer.train_batches(seed, number)]

    first = epoch(0, 1)
    assert len(first) == 2 * 24 // 6 and all(x.shape == (6, 3, 16, 16) for x, _ in first)
    again = epoch(0, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, epoch(0, 2)))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, epoch(1, 1)))
    with_workers = epoch(0, 1, workers=2)
    assert [len(y) for _, y in with_workers] == [6] * 8
    assert all(torch.equal(a[0], b[0]) for a, b in zip(with_workers, epoch(0, 1, workers=2)))
    for world in (2, 3):  # every rank its share of each global batch of 6, the same number of steps
        shares = [epoch(0, 1, rank, world) for rank in range(world)]
        assert [len(share) for share in shares] == [8] * world
        assert all(len(y) == 6 // world for share in shares for _, y in share)


def test_the_shuffle_buffer_mixes_the_classes_of_a_sorted_split():
    order = TrainOrder(seed=0, epoch=1, rank=0, world_size=1, steps=4, buffer=8)
    assert order.batches(0, 3) == 2 and order.batches(2, 3) == 1
    from vbench.data.stream import StreamSplit, Unit

    split = StreamSplit("train", [Unit(f"f{i}", 1, shard=False, label=i // 10, index=i) for i in range(40)], 4)
    drawn = [raw.index for _, raw in zip(range(32), order.raws(split, 0, 1))]
    assert len(set(drawn)) == 32  # a pass hands out each image once before the next pass begins
    assert len({i // 10 for i in drawn[:8]}) >= 3  # the classes are mixed from the first batch on


def _evaluate_rank(rank: int, world: int, store: str, suite_file: str, queue) -> None:
    """One process of a gloo group: the task's streamed evaluation (gathered over the ranks) and what it read."""
    try:
        os.environ.update(WORKERS0)
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
        from vbench.tasks.classification import ClassificationTask

        task = ClassificationTask(load_suite(suite_file), torch.device("cpu"))
        task.load_data()
        read = [int(i) for _, _, index in task.stream.eval_batches() for i in index]
        torch.manual_seed(0)
        scores = task.evaluate(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3)))
        queue.put((rank, read, len(scores.predictions.labels), scores.metrics["top1"]))
        torch.distributed.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        queue.put((rank, repr(exc), None, None))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_evaluation_reads_every_test_image_once_over_all_processes(shards, world):
    _, _, suite_file = shards
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as folder:
        processes = [context.Process(target=_evaluate_rank, args=(rank, world, f"{folder}/store", str(suite_file), queue))
                     for rank in range(world)]
        for process in processes:
            process.start()
        results = sorted(queue.get(timeout=120) for _ in processes)
        for process in processes:
            process.join(timeout=60)
    assert all(isinstance(read, list) for _, read, _, _ in results), results
    read = [i for _, indices, _, _ in results for i in indices]
    assert sorted(read) == list(range(15))  # none dropped, none twice
    assert {images for _, _, images, _ in results} == {15}  # every rank scored the whole split, gathered
    assert len({top1 for _, _, _, top1 in results}) == 1


def _save_corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)


def test_a_corrupt_image_is_skipped_counted_stored_with_the_run_and_said(tmp_path):
    fixture = write_image_folder(tmp_path / "images", classes=("ant", "bee"), train_per_class=6, test_per_class=3,
                                 img_size=16)
    _save_corrupt(tmp_path / "images" / "train" / "ant" / "ant_002.png")
    _save_corrupt(tmp_path / "images" / "val" / "bee" / "bee_001.png")
    assert run_cli("data", "shards", fixture.root, "--output", tmp_path / "shards", "--shard-size", "4").code == 0
    suite = write_image_folder_suite(tmp_path / "s.toml", tmp_path / "shards", num_classes=2, img_size=16,
                                     batch_size=4, repeats=1, autoaugment="none", epochs=1)
    ran = run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", tmp_path / "r.db", env=WORKERS0,
                  cwd=tmp_path)
    assert ran.code == 0, ran.out + ran.err
    assert "skipped corrupt images that do not decode: 1 train, 1 test" in ran.out
    [run] = open_store(str(tmp_path / "r.db"), write=False).list_runs()
    assert run.data["skipped_images"] == {"train": 1, "test": 1} and run.data["reader"] == "shards"
    shown = run_cli("runs", "show", str(run.id), "--db", tmp_path / "r.db")
    assert "skipped_images" in shown.out and "train 1, test 1" in shown.out, shown.out


def test_the_analyses_of_a_streamed_suite_say_what_needs_memory_in_one_line(tmp_path):
    """erf and hybrid shape-bias need the test images in memory: one line, exit 2, nothing written; calibration
    reads the run's kept probabilities."""
    fixture = write_image_folder(tmp_path / "images", classes=("ant", "bee"), train_per_class=4, test_per_class=3,
                                 img_size=16)
    assert run_cli("data", "shards", fixture.root, "--output", tmp_path / "shards", "--shard-size", "4").code == 0
    suite = write_image_folder_suite(tmp_path / "s.toml", tmp_path / "shards", num_classes=2, img_size=16,
                                     batch_size=4, repeats=1, autoaugment="none", epochs=1)
    db = tmp_path / "r.db"
    assert run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", db, env=WORKERS0).code == 0
    for command, what in (("erf", "the effective receptive field"), ("shape-bias", "shape bias on hybrid images")):
        result = run_cli(command, "--suite", suite, "--db", db, "--output-dir", tmp_path / "plots", env=WORKERS0) \
            if command == "erf" else run_cli(command, "--suite", suite, "--db", db, env=WORKERS0)
        assert result.code == 2 and f"is streamed; {what} needs its test split in memory" in result.error_line
    assert not (tmp_path / "plots").exists() and not open_store(str(db), write=False).evaluations()
    calibrated = run_cli("calibration", "--suite", suite, "--db", db, env=WORKERS0)
    assert calibrated.code == 0, calibrated.out + calibrated.err


def test_a_missing_truncated_or_changed_shard_is_one_line_naming_it(shards, tmp_path):
    fixture, _, _ = shards
    folder = tmp_path / "shards"
    assert run_cli("data", "shards", fixture.root, "--output", folder, "--shard-size", "5").code == 0
    suite = write_image_folder_suite(tmp_path / "s.toml", folder, num_classes=3, img_size=16, batch_size=6, epochs=1)
    shard = folder / "train-000001.tar"
    data = shard.read_bytes()
    changed = bytearray(data)
    changed[700] ^= 0xFF
    shard.write_bytes(bytes(changed))
    checked = run_cli("data", "check", folder)
    assert checked.code == 2 and checked.error_line == (
        f"error: shard {shard} does not match the manifest (its sha256 differs); write the shards again with "
        "`vbench data shards`")
    truncate_file(shard)
    for result in (run_cli("data", "check", folder),
                   run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", tmp_path / "r.db", cwd=tmp_path)):
        assert result.code == 2 and f"shard {shard} is truncated" in result.error_line, result.err
    assert not (tmp_path / "r.db").exists()  # refused before anything was written
    shard.unlink()
    missing = run_cli("data", "check", folder)
    assert missing.code == 2 and f"shard {shard} is missing" in missing.error_line
    (folder / MANIFEST).write_text("{")
    assert run_cli("data", "check", folder).error_line.startswith(f"error: unreadable shard manifest {folder / MANIFEST}")


def test_a_shard_that_lies_about_its_contents_stops_the_stream_in_one_line(shards, tmp_path):
    fixture, _, _ = shards
    folder = tmp_path / "shards"
    assert run_cli("data", "shards", fixture.root, "--output", folder, "--shard-size", "50").code == 0
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["splits"]["test"]["shards"][0]["count"] = 16  # one more than it holds, the total kept consistent
    manifest["splits"]["test"]["count"] = 16
    manifest["splits"]["test"]["per_class"][0] += 1
    (folder / MANIFEST).write_text(json.dumps(manifest))
    suite = write_image_folder_suite(tmp_path / "s.toml", folder, num_classes=3, img_size=16)
    streamer = Streamer(*_splits(suite), _suite(suite), torch.device("cpu"), workers=0)
    with pytest.raises(Exception, match=r"test-000000.tar does not match the manifest: it holds 15 images, the manifest says 16"):
        _eval_all(streamer)


def test_a_folder_streams_with_stream_true_and_its_corrupt_files_are_skipped(tmp_path):
    fixture = write_image_folder(tmp_path / "images", classes=("ant", "bee"), train_per_class=4, test_per_class=3,
                                 img_size=16)
    _save_corrupt(tmp_path / "images" / "val" / "ant" / "ant_000.png")
    suite_file = write_image_folder_suite(tmp_path / "s.toml", fixture.root, num_classes=2, img_size=16, batch_size=4)
    suite_file.write_text("stream = true\n" + suite_file.read_text())
    reader, data = open_data(_suite(suite_file))
    assert reader.name == "folder" and data.sizes == {"train": 8, "test": 6}
    streamer = Streamer(data.train, data.test, _suite(suite_file), torch.device("cpu"), workers=0)
    _, labels, indices = _eval_all(streamer)
    assert indices.tolist() == [1, 2, 3, 4, 5] and streamer.skipped_counts() == {"train": 0, "test": 1}
    Image.open(fixture.files[0]).verify()  # the other files are intact


def test_the_readme_commands_write_check_stream_and_compare(tmp_path):
    """The README's "Data at scale" commands on the Tiny-ImageNet fixture: shards, check, both runs (the first 40
    images, fast recipe keys), and compare."""
    import re

    import readme
    from plugins import FAST

    from vbench.data.fixtures import write_fixture

    heading = "## Data at scale: shards, streaming, ImageNet"
    write_fixture("tiny-imagenet", tmp_path / "data")
    local = lambda command: [word.replace("~/data", str(tmp_path / "data")) for word in command]  # noqa: E731
    [toml] = re.findall(r"```toml\n(.*?)```", readme.section(heading), re.S)
    (tmp_path / "tiny-imagenet-shards.toml").write_text(toml.replace("~/data", str(tmp_path / "data")))
    shards, check, in_memory, streamed, compare = readme.commands(heading)
    assert shards[:2] == ["data", "shards"] and check[:2] == ["data", "check"] and compare[0] == "compare"
    for command in (shards, check):
        result = run_cli(*local(command), cwd=tmp_path)
        assert result.code == 0, result.err
    for command in (in_memory, streamed):
        result = run_cli(*local(command), "--epochs", "1", "--batch-size", "10", "--limit", "40", *FAST, env=WORKERS0,
                         cwd=tmp_path)
        assert result.code == 0, result.out + result.err
    runs = open_store(str(tmp_path / "results" / "vbench.db"), write=False).list_runs()
    assert sorted((run.suite, run.data["reader"] if "reader" in run.data else "memory") for run in runs) == \
        [("tiny-imagenet", "memory")] * 3 + [("tiny-imagenet-shards", "shards")] * 3
    manifest = json.loads((tmp_path / "data" / "tiny-imagenet-shards" / MANIFEST).read_text())
    assert {run.data.get("manifest") for run in runs if run.suite == "tiny-imagenet-shards"} == {manifest["identity"]}
    result = run_cli(*compare, cwd=tmp_path)
    assert result.code == 0 and "vit-lite on tiny-imagenet against vit-lite on tiny-imagenet-shards" in result.out
    document = json.loads(run_cli(*compare, "--format", "json", cwd=tmp_path).out)
    assert [row["images"] for row in document["sections"][1]["rows"]] == [40, 40, 40]  # the same 40 test images
    assert any("same recipe and precision" in note for note in document["notes"])
    same = run_cli(*compare[:-2], cwd=tmp_path)  # one backbone on one suite: nothing to compare
    assert same.code == 2 and "--suite-b" in same.error_line
