"""vbench as users get it: the wheel, unpacked outside the repository, run from a folder that holds decoy
`backbones/` and `suites/` packages. It must list every built-in backbone and suite, build its models from its
own files, and import no decoy (`python -m vbench` puts the working folder first on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli import REPO

from vbench.models import registry
from vbench.suites import builtin_suites

DECOY = 'import pathlib; pathlib.Path(__file__).with_name("IMPORTED").write_text("{name}")\n'


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(root / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (root / "dist").glob("vbench-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(root / "site"), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    return root / "site"


def decoy_folder(folder: Path) -> Path:
    for package in ("backbones", "suites"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(DECOY.format(name=package))
    (folder / "backbones" / "evil.py").write_text(
        DECOY.format(name="evil") + "from vbench import register_backbone\n\n"
        "@register_backbone('evil-net', family='evil')\ndef evil_net(img_size=32, num_classes=10):\n"
        "    raise SystemExit('the decoy ran')\n")
    (folder / "suites" / "evil.toml").write_text('kind = "smoke"\nimg_size = 32\nnum_classes = 10\n'
                                                 'mean = [0.5, 0.5, 0.5]\nstd = [0.2, 0.2, 0.2]\n')
    return folder


def vbench_in(folder: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(site), "VBENCH_CACHE": str(folder / "cache")}
    return subprocess.run([sys.executable, "-m", "vbench", *args], cwd=folder, capture_output=True, text=True,
                          env=environment, timeout=300)


def test_the_wheel_ships_its_own_backbones_and_suites_and_imports_no_decoy(unpacked_wheel, tmp_path):
    folder = decoy_folder(tmp_path / "work")
    assert (unpacked_wheel / "vbench" / "backbones" / "lkca.py").is_file()
    assert not (unpacked_wheel / "backbones").exists() and not (unpacked_wheel / "suites").exists()

    listed = vbench_in(folder, unpacked_wheel, "list", "backbones", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    built_in = {spec.name for spec in registry.list_backbones()
                if all(v.module.startswith("vbench.backbones.") for v in spec.variants.values())}
    assert names == built_in and "evil-net" not in names

    suites = vbench_in(folder, unpacked_wheel, "list", "suites", "--json")
    assert suites.returncode == 0, suites.stderr
    assert [row["name"] for row in json.loads(suites.stdout)] == builtin_suites()

    info = vbench_in(folder, unpacked_wheel, "info", "vit-0.5m", "--img", "8", "--classes", "3", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["origin"].endswith(f"({unpacked_wheel / 'vbench' / 'backbones' / 'vit.py'})")

    refused = vbench_in(folder, unpacked_wheel, "run", "--suite", "smoke", "--backbones", "evil-net")
    assert refused.returncode == 2 and "unknown backbone 'evil-net'" in refused.stderr
    assert not list(folder.rglob("IMPORTED")), "a decoy package was imported"
