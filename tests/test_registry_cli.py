import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from vbench import create_backbone, registry
from vbench.cli import app
from vbench.errors import UnknownNameError

runner = CliRunner()

PLUGIN = textwrap.dedent(
    """
    import torch.nn as nn
    from vbench import register_backbone

    @register_backbone("{name}", family="plugin-test", aliases=["{alias}"])
    def tiny(img_size=32, num_classes=10, **overrides):
        \"\"\"A tiny plugin backbone.\"\"\"
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * img_size * img_size, num_classes))
    """
)


def write_plugin(tmp_path, name="tiny-plugin", alias="tp"):
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(PLUGIN.format(name=name, alias=alias))
    return path


def run_cli(*args):
    """Run the real console entry point in a subprocess: exit codes and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "vbench", *args], capture_output=True, text=True)


def test_unknown_backbone_names_the_closest():
    with pytest.raises(UnknownNameError, match="closest: .*lkca-t"):
        create_backbone("lkca-tt")


def test_info_unknown_exits_2_with_one_line():
    result = run_cli("info", "nope")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown backbone 'nope'" in lines[0] and "closest:" in lines[0]


def test_plugin_appears_in_list_and_builds(tmp_path):
    path = write_plugin(tmp_path)
    result = runner.invoke(app, ["list", "backbones", "--family", "plugin-test", "--json", "--plugin", str(path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["tiny-plugin"]
    assert rows[0]["aliases"] == ["tp"]
    assert rows[0]["params"] == 3 * 32 * 32 * 10 + 10
    assert rows[0]["flops"] == 3 * 32 * 32 * 10
    assert create_backbone("tp", num_classes=3)[1].out_features == 3


def test_plugin_reregistering_an_existing_name_fails_clearly(tmp_path):
    path = write_plugin(tmp_path, name="lkca-t", alias="other")
    result = run_cli("list", "backbones", "--plugin", str(path))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "'lkca-t'" in message and "backbones.lkca" in message and str(path.stem) in message
    assert len(message.splitlines()) == 1


def test_plugin_as_module_name(tmp_path, monkeypatch):
    write_plugin(tmp_path, name="module-plugin", alias="mp")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugin("module_plugin")
    assert registry.resolve_name("mp") == "module-plugin"


def test_missing_plugin_is_a_clear_error():
    result = run_cli("list", "backbones", "--plugin", "no/such/file.py")
    assert result.returncode == 2 and "no/such/file.py" in result.stderr


def test_entry_point_group_is_loaded(tmp_path, monkeypatch):
    import importlib.metadata as metadata

    write_plugin(tmp_path, name="entry-plugin", alias="ep")
    monkeypatch.syspath_prepend(str(tmp_path))

    class FakeEntryPoint:
        def load(self):
            import importlib

            return importlib.import_module("entry_plugin")

    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    registry.load_entry_point_backbones()
    assert registry.resolve_name("ep") == "entry-plugin"
    assert metadata  # the real group name is what pyproject users declare


def test_list_json_counts_are_plain_integers():
    result = runner.invoke(app, ["list", "backbones", "--family", "lkca", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["lkca-t"]["params"] == 1027747
    assert rows["lkca-t"]["aliases"] == ["vit-1m-lkca"]
    assert isinstance(rows["lkca-b"]["flops"], int) and rows["lkca-b"]["flops"] > 100_000_000
    assert rows["lkca-t"]["flops_paper_counter"] == 64816522  # paper_convention_macs of reference-models.csv


def test_list_table_shows_names_and_paper_names():
    result = runner.invoke(app, ["list", "backbones", "--family", "vit"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "vit-lite" in result.output and "ViT-Lite" in result.output and "1.06M" in result.output


def test_info_json_has_paper_numbers_and_layers():
    result = runner.invoke(app, ["info", "vit-1m-lkca", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["name"] == "lkca-t" and info["params"] == 1027747
    assert info["paper"]["params_m"] == 1.03 and info["paper"]["flops_m"] == 64.82
    assert any(layer["module"] == "blocks" and layer["params"] > 0 for layer in info["layers"])


def test_info_at_64_counts_the_64_setting():
    result = runner.invoke(app, ["info", "lkca-t", "--img", "64", "--classes", "200", "--json"])
    assert json.loads(result.output)["params"] == 1073361
