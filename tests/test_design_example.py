"""The design's own example, end to end through the CLI: `vbench run --suite tiny-imagenet --backbones
lkca-t,swin-t` on the Tiny-ImageNet fixture (cut to one epoch of 100 images), then `vbench report`."""

from cli import run_cli

from vbench.data.fixtures import write_fixture


def test_tiny_imagenet_lkca_t_and_swin_t_then_report(tmp_path):
    fixture = write_fixture("tiny-imagenet", tmp_path / "data", train_per_class=1, val_per_class=1)
    db = tmp_path / "runs.db"
    run = run_cli("run", "--suite", "tiny-imagenet", "--backbones", "lkca-t,swin-t", "--data-root", fixture.root,
                  "--db", db, "--epochs", "1", "--batch-size", "50", "--limit", "100")
    assert run.code == 0, run.out + run.err
    assert run.out.count(" done ") == 2 or run.out.count("│ done") == 2, run.out
    report = run_cli("report", "--db", db, "--format", "markdown")
    assert report.code == 0, report.err
    assert "## tiny-imagenet (Tiny-ImageNet)" in report.out
    # lkca-t goes by its name in the table of baselines it mirrors (Table 5), not by Table 3's "ViT/1M-LKCA"
    assert "| LKCA-T " in report.out and "| Swin-T " in report.out and "ViT/1M-LKCA" not in report.out
    assert "Data " in report.out and "--limit 100" in report.out
