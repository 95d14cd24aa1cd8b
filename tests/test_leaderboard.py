"""`vbench leaderboard`: the static site written from a store of synthetic runs, checked in headless Chromium
(tables sort and filter, charts render, run pages open, nothing outside the site is loaded, no console
errors), and its bad inputs, atomic replacement and `--serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import readme
from cli import REPO, run_cli, start_cli
from leaderboard_fixture import CIFAR10, MODELS, write_fixture_store
from services import console_errors, free_port, serve_directory

from vbench.leaderboard import MARKER, Block, register_section, unregister_section
from vbench.leaderboard.charts import pareto_front
from vbench.store import open_store

SCREENSHOT = REPO / "docs" / "leaderboard.png"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return write_fixture_store(tmp_path_factory.mktemp("leaderboard") / "runs.db")


@pytest.fixture(scope="module")
def site(db, tmp_path_factory) -> Path:
    """The fixture store's site; its page of all runs shows 20 of the 27 runs until "show all"."""
    from vbench.leaderboard import runs

    output = tmp_path_factory.mktemp("site") / "board"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs, "RUNS_SHOWN", 20)
        result = run_cli("leaderboard", "--db", db, "--output", output)
    assert result.code == 0, result.err
    assert result.out.startswith(f"wrote 31 pages (27 run pages; 12 result rows) to {output}")
    return output


# --- the files ---------------------------------------------------------------------------------------------
class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def test_every_page_references_only_files_of_the_site(site):
    pages = sorted(site.rglob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "segmentation.html", "runs.html", "1.html", "27.html"}
    assert len(list((site / "runs").iterdir())) == 27  # a page per run, the failed one included
    for page in pages:
        parser = References()
        parser.feed(page.read_text())
        assert parser.found, page
        for reference in parser.found:
            if reference.startswith("#") or reference == "data:,":
                continue
            parts = urlsplit(reference)
            assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), (page, reference)
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_relative_to(site.resolve()) and target.exists(), (page, reference)
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000  # plotly.js itself, not a CDN loader
    assert json.loads((site / MARKER).read_text())["generator"] == "vbench leaderboard"


def test_run_page_shows_recipe_environment_files_and_steps(db, site):
    store = open_store(str(db), write=False)
    run = next(r for r in store.list_runs(backbones=["lkca-t"]) if r.suite == "cifar10" and r.seed == 1)
    store.close()
    page = (site / "runs" / f"{run.id}.html").read_text()
    assert f"Run {run.id}: lkca-t on cifar10, seed 1" in page
    for text in ("NVIDIA A100-SXM4-40GB", "2.4.1", "CPU threads", "warmup_epochs", run.recipe_hash, "/data/cifar10",
                 "none (not kept, or deleted)", "10 evaluated epochs", "1.03 M (1,030,000)"):
        assert text in page, text
    data = json.loads(page.split('<script type="application/json" id="curve-data">')[1].split("</script>")[0])
    assert data["unit"] == "epoch" and data["left"][:2] == ["top1", "top5"]
    assert [row[0] for row in data["rows"]] == list(range(10, 101, 10))
    assert data["rows"][-1][1]["top1"] == pytest.approx(92.70)


def test_a_nan_in_the_step_rows_reaches_the_page_as_null(site):
    page = (site / "runs" / "27.html").read_text()  # the failed run: its last loss was NaN
    payload = page.split('<script type="application/json" id="curve-data">')[1].split("</script>")[0]
    data = json.loads(payload, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert data["rows"] == [[10, {"train_loss": 2.0, "top1": 70.0}], [20, {"train_loss": None, "top1": 80.0}]]


def test_run_page_lists_files_the_run_kept(db, tmp_path):
    from vbench.store.artifacts import weights_path

    path = tmp_path / "runs.db"
    shutil.copy(db, path)
    store = open_store(str(path), write=False)
    weights = weights_path(store, 2)
    store.close()
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    assert run_cli("leaderboard", "--db", path, "--output", tmp_path / "site").code == 0
    assert f"<code>{weights}</code>" in (tmp_path / "site" / "runs" / "2.html").read_text()


def test_worker_processes_write_the_same_run_pages(db, tmp_path, monkeypatch):
    """A large store's run pages are written by forked workers; they write what one process writes."""
    from vbench.leaderboard import runs

    assert run_cli("leaderboard", "--db", db, "--output", tmp_path / "one").code == 0
    monkeypatch.setattr(runs, "_workers", lambda count: 2)
    assert run_cli("leaderboard", "--db", db, "--output", tmp_path / "workers").code == 0

    def pages(site: Path) -> dict[str, str]:
        return {p.name: p.read_text().split("<footer>")[0] for p in (site / "runs").iterdir()}

    assert pages(tmp_path / "workers") == pages(tmp_path / "one") and len(pages(tmp_path / "one")) == 27


# --- in the browser ----------------------------------------------------------------------------------------
def _wait(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def _visible_rows(table) -> list:
    from selenium.webdriver.common.by import By

    return [row for row in table.find_elements(By.CSS_SELECTOR, "tbody tr") if row.is_displayed()]


def _column(table, index: int) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(row.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-value"))
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def _charts_drawn(chrome, expected: int) -> list:
    from selenium.webdriver.common.by import By

    return _wait(lambda: len(found := chrome.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= expected
                 and found)


def test_the_index_in_a_browser(chrome, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chrome.get((site / "index.html").as_uri())
    assert chrome.title == "Classification · vbench leaderboard"
    text = chrome.find_element(By.TAG_NAME, "body").text
    for model in MODELS[:-2]:  # the classification ones; the segmentation page is checked below
        assert model in text, model
    for backbone, *_ in CIFAR10:
        assert backbone in text, backbone

    # each suite's three charts render at a visible size
    _charts_drawn(chrome, 6)
    charts = chrome.find_elements(By.CSS_SELECTOR, "#suite-cifar10 .chart")
    assert len(charts) == 3
    for chart in charts:
        size = chart.find_element(By.CSS_SELECTOR, ".main-svg").size
        assert size["width"] >= 300 and size["height"] >= 300, size
        assert chart.find_elements(By.CSS_SELECTOR, ".scatterlayer .point")  # points were drawn

    # hovering a point names the backbone, its seeds and its recipe hash (the throughput chart: no paper points
    # lie under ours there)
    from selenium.webdriver.common.action_chains import ActionChains

    point = charts[2].find_elements(By.CSS_SELECTOR, ".scatterlayer .trace:first-child .point")[0]
    ActionChains(chrome).move_to_element(point).perform()
    hover = _wait(lambda: charts[2].find_element(By.CSS_SELECTOR, ".hoverlayer").text)
    assert "seeds 0, 1, 2 (n=3)" in hover and "recipe " in hover and re.search(r"\([\w.-]*lkca[\w.-]*\)", hover), hover

    # clicking the accuracy header orders the rows, a second click reverses them
    table = chrome.find_element(By.ID, "suite-cifar10-table")
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    acc = next(i for i, h in enumerate(headers) if h.text == "Acc")
    before = _column(table, acc)
    assert before != sorted(before)  # the paper's order, not already sorted
    headers[acc].click()
    assert _column(table, acc) == sorted(before) and headers[acc].get_attribute("aria-sort") == "ascending"
    headers[acc].click()
    assert _column(table, acc) == sorted(before, reverse=True)

    # the family filter and the search box hide rows
    assert len(_visible_rows(table)) == len(CIFAR10)
    Select(chrome.find_element(By.CSS_SELECTOR, '[data-facet-for="suite-cifar10-table"]')).select_by_value("lkca")
    shown = _visible_rows(table)
    assert len(shown) == 3 and all("LKCA" in row.text for row in shown)
    assert chrome.find_element(By.CSS_SELECTOR, '[data-count-for="suite-cifar10-table"]').text == "3 of 8 rows"
    search = chrome.find_element(By.CSS_SELECTOR, '[data-search-for="suite-cifar10-table"]')
    search.send_keys("vit-0.5m")
    _wait(lambda: [row.text.split("\n")[0] for row in _visible_rows(table)] == ["ViT/0.5M-LKCA"])
    Select(chrome.find_element(By.CSS_SELECTOR, '[data-facet-for="suite-cifar10-table"]')).select_by_value("")
    assert len(_visible_rows(table)) == 2  # ViT/0.5M and its LKCA partner
    assert console_errors(chrome) == []

    # a seed of a row opens its run page, with its learning curve and its table of epochs
    row = next(r for r in _visible_rows(table) if r.text.startswith("ViT/0.5M-LKCA"))
    link = row.find_element(By.LINK_TEXT, "s1")
    run_id = link.get_attribute("href").rsplit("/", 1)[1].split(".")[0]
    link.click()
    _wait(lambda: chrome.title.startswith(f"Run {run_id} "))
    assert "vit-0.5m-lkca on cifar10, seed 1" in chrome.find_element(By.TAG_NAME, "h1").text
    curve = _charts_drawn(chrome, 1)[0]
    assert curve.size["height"] >= 300
    chrome.find_element(By.CSS_SELECTOR, "details summary").click()
    steps = chrome.find_element(By.ID, "steps-table")
    assert len(steps.find_elements(By.CSS_SELECTOR, "tbody tr")) == 10
    assert [h.text for h in steps.find_elements(By.CSS_SELECTOR, "thead th")][:2] == ["epoch", "train_loss"]
    assert console_errors(chrome) == []


def test_the_other_pages_served_over_http(chrome, site):
    from selenium.webdriver.common.by import By

    with serve_directory(site) as base_url:
        chrome.get(base_url + "segmentation.html")
        text = chrome.find_element(By.TAG_NAME, "body").text
        assert "ade20k (ADE20K, Tables 6-7)" in text and "LKCA-S" in text and "ViT-S" in text
        chart = _charts_drawn(chrome, 1)[0]
        assert chart.size["width"] >= 300 and chart.size["height"] >= 300
        legend = chrome.find_element(By.CSS_SELECTOR, ".legend").text
        assert "LKCA-S UPerNet (paper)" in legend
        chrome.get(base_url + "runs.html")
        table = chrome.find_element(By.ID, "runs-table")
        count = chrome.find_element(By.CSS_SELECTOR, '[data-count-for="runs-table"]')
        assert len(_visible_rows(table)) == 20 and count.text == "the first 20 of 27 rows"
        headers = table.find_elements(By.CSS_SELECTOR, "thead th")
        headers[0].click()
        headers[0].click()  # by run id, descending: the first 20 are runs 27 down to 8
        assert [int(row.text.split()[0]) for row in _visible_rows(table)] == list(range(27, 7, -1))
        chrome.find_element(By.CSS_SELECTOR, '[data-show-all-for="runs-table"]').click()
        assert len(_visible_rows(table)) == 27 and count.text == "27 rows"
        from selenium.webdriver.support.ui import Select

        Select(chrome.find_element(By.CSS_SELECTOR, '[data-facet-for="runs-table"]')).select_by_value("failed")
        [failed] = _visible_rows(table)
        assert count.text == "1 of 27 rows"
        failed.find_element(By.TAG_NAME, "a").click()
        _wait(lambda: "failed" in chrome.find_element(By.TAG_NAME, "h1").text)
        assert "the training loss is NaN at epoch 21" in chrome.find_element(By.TAG_NAME, "body").text
        _charts_drawn(chrome, 1)
        assert console_errors(chrome) == []


def test_screenshot_for_the_readme(chrome, site, tmp_path):
    """The README's picture, taken from the fixture site (VBENCH_UPDATE_SCREENSHOT=1 writes docs/leaderboard.png)."""
    from PIL import Image

    chrome.set_window_size(1400, 1320)
    chrome.get((site / "index.html").as_uri())
    _charts_drawn(chrome, 6)
    time.sleep(0.5)  # plotly's transitions
    shot = tmp_path / "leaderboard.png"
    assert chrome.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.size[0] >= 1300 and len(image.convert("RGB").getcolors(2**16) or range(2**16)) > 50
    if os.environ.get("VBENCH_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    assert console_errors(chrome) == []


# --- the data behind the charts ------------------------------------------------------------------------------
def test_pareto_front():
    points = [(1.0, 90.0), (2.0, 89.0), (2.0, 95.0), (3.0, 94.0), (4.0, 96.0), (4.0, 96.0)]
    assert pareto_front(points) == [(1.0, 90.0), (2.0, 95.0), (4.0, 96.0)]
    # a benefit on the x axis (throughput): the fastest first
    assert pareto_front([(100, 90.0), (300, 89.0), (200, 91.0), (50, 92.0)], lower_is_better=False) == [
        (300, 89.0), (200, 91.0), (50, 92.0)]


def test_charts_carry_front_hover_and_hollow_paper_points(site):
    page = (site / "index.html").read_text()
    spec = json.loads(page.split('id="suite-cifar10-params-spec">')[1].split("</script>")[0])
    names = [trace["name"] for trace in spec["data"]]
    assert names[-2:] == ["Pareto front (measured)", "paper"]
    front = spec["data"][-2]
    assert front["x"] == sorted(front["x"]) and front["y"] == sorted(front["y"])
    assert spec["data"][-1]["marker"]["symbol"] == "circle-open"
    lkca = next(trace for trace in spec["data"] if trace["name"] == "lkca")
    assert ["LKCA-T", "lkca-t", "0, 1, 2"] == lkca["customdata"][lkca["x"].index(1.03)][:3]
    assert "seeds %{customdata[2]}" in lkca["hovertemplate"] and "recipe %{customdata[3]}" in lkca["hovertemplate"]


# --- bad input, replacement, serving -------------------------------------------------------------------------
def test_an_empty_store_writes_a_page_that_says_how_to_add_runs(tmp_path):
    open_store(str(tmp_path / "empty.db")).close()
    result = run_cli("leaderboard", "--db", tmp_path / "empty.db", "--output", tmp_path / "site")
    assert result.code == 0, result.err
    assert "no finished runs yet" in result.out
    index = (tmp_path / "site" / "index.html").read_text()
    assert "No finished runs yet" in index and "vbench run --suite smoke" in index
    assert (tmp_path / "site" / "runs.html").is_file() and (tmp_path / "site" / "assets" / "plotly.min.js").is_file()


@pytest.mark.parametrize("make_output, message", [
    (lambda tmp: tmp / "a-file" / "site", "is not a writable folder; give a writable --output"),
    (lambda tmp: tmp / "a-file", "is not a folder; give a folder for the site"),
    (lambda tmp: tmp / "mine", "holds files that are not a vbench leaderboard"),
])
def test_an_output_that_cannot_be_written_is_one_line(db, tmp_path, make_output, message):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_cli("leaderboard", "--db", db, "--output", make_output(tmp_path))
    assert result.code == 2 and result.out == ""
    assert message in result.error_line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_rerunning_replaces_the_site_whole_and_a_failure_leaves_it_as_it_was(db, tmp_path):
    output = tmp_path / "site"
    assert run_cli("leaderboard", "--db", db, "--output", output).code == 0
    (output / "stale.html").write_text("from an older site")
    assert run_cli("leaderboard", "--db", db, "--output", output, "--suite", "cifar100").code == 0
    assert not (output / "stale.html").exists()
    index = (output / "index.html").read_text()
    assert len(list((output / "runs").iterdir())) == 2 and "cifar100 (CIFAR-100)" in index
    assert "cifar10 (CIFAR-10)" not in index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folder left beside it

    written = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}

    @register_section("broken", page="index", order=50)
    def broken(site):
        yield Block("half", "Half", "")
        raise RuntimeError("a section failed half-way")

    try:
        result = run_cli("leaderboard", "--db", db, "--output", output)
    finally:
        unregister_section("broken")
    assert result.code == 1 and "a section failed half-way" in result.error_line
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_no_gain_between_two_experiments_says_why(tmp_path):
    from test_report import add_run

    store = open_store(str(tmp_path / "runs.db"))
    add_run(store, "cifar10", "vit-0.5m", ["ViT/0.5M"], 0, 80.0, batch_size=32)
    add_run(store, "cifar10", "vit-0.5m-lkca", ["ViT/0.5M-LKCA"], 0, 81.0, batch_size=64)
    add_run(store, "cifar10", "vit-lite", ["ViT/1M"], 0, 80.0)
    add_run(store, "cifar10", "lkca-t", ["ViT/1M-LKCA"], 0, 82.5)
    store.close()
    assert run_cli("leaderboard", "--db", tmp_path / "runs.db", "--output", tmp_path / "site").code == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert '<td title="no gain: recipe differs from vit-0.5m&#x27;s" class="muted">recipe differs</td>' in index
    assert '<td data-value="2.5" class="up">+2.50</td>' in index


def test_a_postgresql_store(fresh_database, tmp_path):
    """Step rows are read as JSON text (a CAST in SQL); the server hands them over as text too."""
    from leaderboard_fixture import add_classification

    store = open_store(fresh_database)
    run_id = add_classification(store, "cifar10", CIFAR10[3], 0, 92.31)
    store.close()
    result = run_cli("leaderboard", "--db", fresh_database, "--output", tmp_path / "site")
    assert result.code == 0, result.err
    page = (tmp_path / "site" / "runs" / f"{run_id}.html").read_text()
    data = json.loads(page.split('<script type="application/json" id="curve-data">')[1].split("</script>")[0])
    assert len(data["rows"]) == 10 and data["rows"][-1][1]["top1"] == pytest.approx(92.31)


def test_a_further_task_gets_a_page_of_its_own(tmp_path):
    store = open_store(str(tmp_path / "runs.db"))
    for seed, score in enumerate((0.61, 0.65)):
        store.start_run(task="toy-detection", suite="toy", dataset="toy", backbone="tiny-det", family="test", seed=seed,
                        status="done", recipe={"epochs": 1}, recipe_hash="toyrecipe0000000", data_id="toy",
                        metrics={"box_ap": score}, params=1000, flops=2000, step_unit="epoch", steps=1, steps_done=1)
    store.close()
    result = run_cli("leaderboard", "--db", tmp_path / "runs.db", "--output", tmp_path / "site")
    assert result.code == 0, result.err
    page = (tmp_path / "site" / "toy-detection.html").read_text()
    assert "toy (toy-detection)" in page and "tiny-det" in page and 'data-value="0.63"' in page
    index = (tmp_path / "site" / "index.html").read_text()
    assert index.count('<a href="toy-detection.html">Toy-detection</a>') == 2  # in the navigation and the text
    assert "No classification suite here" in index


def test_serve_prints_the_url_serves_the_site_and_stops_on_ctrl_c(db, tmp_path):
    """The README's `vbench leaderboard --serve --port 8000`, on a free port, in a folder whose results/vbench.db
    is the fixture store."""
    (tmp_path / "results").mkdir()
    shutil.copy(db, tmp_path / "results" / "vbench.db")
    serve = readme.commands("## Leaderboard")[1]
    assert serve == ["leaderboard", "--serve", "--port", "8000"]
    port = free_port()
    process = start_cli(*serve[:-1], port, cwd=tmp_path)
    try:
        lines = []
        while not any("serving" in line for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = f"http://127.0.0.1:{port}/"
        assert f"serving {tmp_path / 'results' / 'leaderboard'} at {url} (Ctrl-C stops)" in lines[-1]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"vbench leaderboard" in response.read()
        with urllib.request.urlopen(url + "assets/plotly.min.js", timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_on_a_taken_port_is_one_line_before_anything_is_written(db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("leaderboard", "--db", db, "--output", tmp_path / "site", "--serve", "--port", port)
    assert result.code == 2 and f"cannot serve on 127.0.0.1:{port}" in result.error_line
    assert not (tmp_path / "site").exists()


def test_readme_leaderboard_command(db, tmp_path):
    """The README's command, in a folder whose results/vbench.db is the fixture store."""
    (tmp_path / "results").mkdir()
    shutil.copy(db, tmp_path / "results" / "vbench.db")
    [write, _] = readme.commands("## Leaderboard")
    result = run_cli(*write, cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "results" / "leaderboard" / "index.html").is_file()


def test_the_generation_benchmark_runs(tmp_path):
    result = run_cli("bench", "leaderboard", "--runs", "100", "--steps", "2", "--rounds", "1")
    assert result.code == 0, result.err
    assert "vbench leaderboard on 100 runs" in result.out and "fresh" in result.out and "replace" in result.out


HOSTILE_NAMES = ["<!--<script>", "</script><script>alert(1)</script>", "<b>bold</b>", '<a href="https://x">x</a>',
                 "%{x} %{customdata[0]}", "a&amp;b", "\u2028line"]


def test_every_page_parses_with_all_its_scripts_whatever_the_names_in_the_store(tmp_path):
    """An HTML5 parser finds every script the site wrote, on every page, with hostile backbone and family names in
    the store; Plotly gets those names escaped (it reads <b>, <a href> and entities in names and hover text)."""
    import html5lib
    from test_report import add_run

    store = open_store(str(tmp_path / "runs.db"))
    for seed, name in enumerate(HOSTILE_NAMES):
        run_id = add_run(store, "cifar10", name, [name], 0, 80.0 + seed)
        store.update_run(run_id, family=name)
        store.replace_steps(run_id, [(1, {"top1": 80.0 + seed, "train_loss": 1.0})])
    store.close()
    assert run_cli("leaderboard", "--db", tmp_path / "runs.db", "--output", tmp_path / "site").code == 0
    pages = sorted((tmp_path / "site").rglob("*.html"))
    assert len(pages) >= len(HOSTILE_NAMES) + 2
    for page in pages:
        text = page.read_text()
        written = len(re.findall(r"<script\b", text))
        parsed = html5lib.parse(text, namespaceHTMLElements=False).findall(".//script")
        assert len(parsed) == written, f"{page.name}: {written} scripts written, {len(parsed)} after an HTML5 parse"
        for script in parsed:
            if script.get("type") == "application/json":
                json.loads(script.text)  # each data block is whole JSON
    spec = json.loads(html5lib.parse((tmp_path / "site" / "index.html").read_text(), namespaceHTMLElements=False)
                      .find(".//script[@id='suite-cifar10-params-spec']").text)
    names = {trace["name"] for trace in spec["data"]}
    assert "&lt;b&gt;bold&lt;/b&gt;" in names and "<b>bold</b>" not in names
    shown = [row[1] for trace in spec["data"] for row in trace.get("customdata") or [] if len(row) > 1]
    assert '&lt;a href="https://x"&gt;x&lt;/a&gt;' in shown and not any("<" in text for text in shown)
