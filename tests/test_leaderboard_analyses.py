"""The robustness and significance pages of the leaderboard, from runs trained, evaluated on corruptions and
compared through the CLI, and checked in headless Chromium."""

from __future__ import annotations

import pytest
from cli import run_cli
from services import console_errors

from vbench.data.fixtures import write_fixture

TINY = ["--epochs", "1", "--batch-size", "10", "--limit", "20", "--set", "repeats=1", "--set", "autoaugment=none"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyses")
    fixture = write_fixture("cifar10", root / "data", per_batch=8, num_test=20)
    db = root / "runs.db"
    trained = run_cli("run", "--suite", "cifar10", "--backbones", "vit-0.5m,vit-0.5m-lkca", "--seeds", "0,1",
                      "--data-root", fixture.root, "--db", db, *TINY)
    assert trained.code == 0, trained.out + trained.err
    robust = run_cli("robustness", "--suite", "cifar10", "--data-root", fixture.root, "--db", db, "--limit", "20",
                     "--corruptions", "fog,snow", "--severities", "1")
    assert robust.code == 0, robust.out + robust.err
    built = run_cli("leaderboard", "--output", root / "site", "--db", db)
    assert built.code == 0, built.out + built.err
    return root / "site"


def test_the_robustness_and_significance_pages_are_written(site):
    robustness = (site / "robustness.html").read_text()
    assert "cifar10: robustness to corruptions" in robustness and "mCE" in robustness and "fog" in robustness
    assert "ViT/0.5M-LKCA" in robustness
    significance = (site / "significance.html").read_text()
    assert "vit-0.5m-lkca against vit-0.5m on cifar10" in significance and "McNemar p" in significance
    index = (site / "index.html").read_text()
    assert 'href="robustness.html"' in index and 'href="significance.html"' in index


def test_they_load_in_a_browser_without_console_errors(chrome, site):
    from selenium.webdriver.common.by import By

    for page in ("robustness.html", "significance.html"):
        chrome.get((site / page).as_uri())
        assert chrome.find_element(By.TAG_NAME, "table").is_displayed()
        assert console_errors(chrome) == []
