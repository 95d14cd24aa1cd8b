"""The backbone registry: declarations read without torch, the contract (tasks, accepted keywords, feature
pyramids), plugins and entry points, and the commands that list and describe backbones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from cli import REPO, process_result, run_cli

from vbench import create_backbone
from vbench.errors import UnknownNameError, VbenchError
from vbench.models import registry

PLUGIN = textwrap.dedent(
    """
    import torch.nn as nn
    from vbench import register_backbone

    @register_backbone("{name}", family="plugin-test", aliases=["{alias}"])
    def tiny(img_size=32, num_classes=10):
        \"\"\"A tiny plugin backbone.\"\"\"
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * img_size * img_size, num_classes))
    """
)


def write_plugin(tmp_path, name="tiny-plugin", alias="tp", source=PLUGIN):
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(source.format(name=name, alias=alias))
    return path


# --- declarations and the contract -----------------------------------------------------------------
def test_listing_backbones_and_help_never_import_torch():
    script = ("import sys\nfrom vbench.cli import main\n"
              "for args in (['--help'], ['list', 'backbones'], ['list', 'backbones', '--json'], ['list', 'suites']):\n"
              "    try:\n        main(args)\n    except SystemExit as exc:\n        assert exc.code in (0, None), exc.code\n"
              "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO TORCH"
    assert "lkca-t" in done.stdout and "tiny-imagenet" in done.stdout


def test_every_builtin_module_registers_what_its_source_declares():
    import importlib

    declared = {(name, variant.task): (variant.module, variant.accepts, variant.features)
                for name, spec in registry.BACKBONES.items() for variant in spec.variants.values()
                if variant.module.startswith("vbench.backbones.")}
    for module, _ in registry.builtin_modules():
        importlib.import_module(module)  # the real decorators run: they check against the declaration
    built = {(name, variant.task): (variant.module, variant.accepts, variant.features)
             for name, spec in registry.BACKBONES.items() for variant in spec.variants.values()
             if variant.module.startswith("vbench.backbones.")}
    assert built == declared and len(declared) >= 55
    assert all(v.builder is not None for s in registry.BACKBONES.values() for v in s.variants.values()
               if v.module.startswith("vbench.backbones."))


def test_one_registration_per_paper_model_with_a_variant_per_task():
    lkca_b = registry.get_backbone("lkca-b")
    assert lkca_b.tasks == ("classification", "segmentation")
    assert registry.get_backbone("lkca-b-seg") is lkca_b and registry.get_backbone("LKCA-B-SEG") is lkca_b
    assert not any(name.endswith("-seg") for name in registry.BACKBONES.names())  # only old aliases carry the suffix
    encoder = lkca_b.build(img_size=64, num_classes=150, task="segmentation")
    classifier = lkca_b.build(img_size=32, num_classes=10)
    assert type(encoder).__name__ == "PlainPyramidEncoder" and type(classifier).__name__ == "VisionTransformer"


def test_builders_take_only_what_they_declare():
    with pytest.raises(VbenchError, match="backbone 'vit-small' \\(classification\\) does not accept lkca_view; "
                                          "it accepts drop_path_rate"):
        create_backbone("vit-small", lkca_view="conv")
    with pytest.raises(VbenchError, match="'cait-t' \\(classification\\) does not accept drop_path_rate; it accepts "
                                          "no keyword arguments"):
        create_backbone("cait-t", drop_path_rate=0.1)
    with pytest.raises(VbenchError, match="backbone 'vit-s' has no classification model; its tasks: segmentation"):
        create_backbone("vit-s")


@pytest.mark.parametrize("name", ["vit-0.5m", "lkca-t", "swin-t", "lska-t", "resnet18-cifar", "mobilevitv2-050"])
def test_drop_path_rate_reaches_the_model(name):
    from timm.layers import DropPath

    rates = {module.drop_prob for module in create_backbone(name, drop_path_rate=0.3).modules()
             if isinstance(module, DropPath)}
    assert rates and max(rates) == pytest.approx(0.3)


def test_dense_variants_return_the_pyramid_they_declare():
    for spec in registry.list_backbones(task="segmentation"):
        features = spec.variant("segmentation").features
        encoder = spec.build(img_size=64, num_classes=150, task="segmentation").eval()
        with torch.no_grad():
            levels = encoder(torch.zeros(1, 3, 64, 64))
        assert [level.shape[1] for level in levels] == list(features.channels), spec.name
        assert [64 // level.shape[-1] for level in levels] == list(features.strides), spec.name
        info = getattr(encoder, "feature_info", None)  # timm's own record, where the model comes from timm
        if info is not None:
            assert tuple(info.channels()) == features.channels and tuple(info.reduction()) == features.strides


def test_unknown_backbone_names_the_closest():
    with pytest.raises(UnknownNameError, match="closest: .*lkca-t"):
        create_backbone("lkca-tt")


def test_patterns_select_backbones():
    names = [s.name for s in registry.select_backbones("vit-*")]
    assert "vit-0.5m" in names and "vit-s" in names and "lkca-t" not in names
    assert [s.name for s in registry.select_backbones("vit-*", task="segmentation")] == ["vit-b", "vit-s"]
    assert [s.name for s in registry.select_backbones("lkca-t,vit-2m*")] == ["lkca-t", "vit-2m", "vit-2m-lkca"]
    with pytest.raises(UnknownNameError, match="no backbone matches 'zz-\\*'"):
        registry.select_backbones("zz-*")


# --- plugins and entry points ----------------------------------------------------------------------
def test_plugin_appears_in_list_and_builds(tmp_path):
    path = write_plugin(tmp_path)
    result = run_cli("list", "backbones", "--family", "plugin-test", "--json", "--measure", "--plugin", path)
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [row["name"] for row in rows] == ["tiny-plugin"] and rows[0]["aliases"] == ["tp"]
    assert rows[0]["params"] == 3 * 32 * 32 * 10 + 10 and rows[0]["flops"] == 3 * 32 * 32 * 10
    assert create_backbone("tp", num_classes=3)[1].out_features == 3


def test_plugin_reregistering_an_existing_name_fails_clearly(tmp_path):
    path = write_plugin(tmp_path, name="lkca-t", alias="other")
    result = run_cli("list", "backbones", "--plugin", path)
    assert result.code == 2
    line = result.error_line
    assert "'lkca-t'" in line and "backbones.lkca" in line and path.stem in line


def test_a_plugin_that_raises_is_one_line_naming_it_and_its_line(tmp_path):
    path = tmp_path / "boom.py"
    path.write_text("import os\n\nraise ValueError('bad config')\n")
    for command in (["list", "backbones"], ["info", "lkca-t"], ["report"], ["run", "--suite", "smoke", "--backbones", "x"]):
        result = run_cli(*command, "--plugin", path)
        assert result.code == 2, result.err
        line = result.error_line
        assert f"plugin {path} raised ValueError: bad config at {path}:3" in line, line
    debug = process_result("list", "backbones", "--plugin", path, "--debug")
    assert debug.code != 0 and "Traceback" in debug.err and "ValueError: bad config" in debug.err


def test_plugin_as_module_name(tmp_path, monkeypatch):
    write_plugin(tmp_path, name="module-plugin", alias="mp")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugin("module_plugin")
    assert registry.resolve_name("mp") == "module-plugin"


def test_missing_plugin_is_a_clear_error():
    result = run_cli("list", "backbones", "--plugin", "no/such/file.py")
    assert result.code == 2 and "plugin file 'no/such/file.py' does not exist" in result.error_line


def test_entry_point_group_is_loaded(tmp_path, monkeypatch):
    package = tmp_path / "ep_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(PLUGIN.format(name="ep-net", alias="epn"))
    dist = tmp_path / "ep_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vbench.backbones]\nep = ep_pkg.models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.BACKBONES.reset_entry_points()
    registry.load_entry_point_backbones()
    assert registry.resolve_name("epn") == "ep-net"


# --- list and info -----------------------------------------------------------------------------------
def test_list_answers_from_declarations_and_measures_on_request():
    rows = {row["name"]: row for row in json.loads(run_cli("list", "backbones", "--json").out)}
    assert rows["lkca-b"]["tasks"] == ["classification", "segmentation"] and "params" not in rows["lkca-b"]
    assert rows["vit-small"]["paper_params_m"] == 2.69 and rows["lkca-l"]["paper_params_m"] is not None
    measured = json.loads(run_cli("list", "backbones", "vit-0.5m,twins-svt-s", "--measure", "--json").out)
    vit, twins = measured
    from vbench.reporting.paper import reference_models

    authors = reference_models().query("source_name == 'vit-05m' and img_size == 32 and num_classes == 10")
    assert (vit["params"], vit["flops_complete"], vit["error"]) == (int(authors["params"].iloc[0]), True, None)
    assert isinstance(vit["params"], int) and isinstance(vit["flops"], int)
    assert twins["params"] is None and "twins-svt-s cannot run on 32x32 images" in twins["error"]
    [lkca] = json.loads(run_cli("list", "backbones", "lkca-t", "--measure", "--json").out)
    assert lkca["flops_paper_counter"] == 64816522  # paper_convention_macs of reference-models.csv


def test_list_table_never_cuts_a_name_at_80_columns():
    result = run_cli("list", "backbones", env={"COLUMNS": "80"})
    assert result.code == 0
    for spec in registry.list_backbones():
        assert spec.name in result.out, spec.name


def test_info_json_has_the_contract_paper_numbers_and_layers():
    result = run_cli("info", "vit-lkca", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["name"] == "lkca-b" and info["params"] == 2_691_520 and info["accepts"] == ["drop_path_rate", "lkca_view"]
    assert info["paper"]["params_m"] == 2.69 and info["layers"][0]["module"]
    seg = json.loads(run_cli("info", "lkca-s", "--task", "segmentation", "--img", "64", "--json").out)
    assert seg["task"] == "segmentation" and seg["params"] > 20e6


@pytest.mark.parametrize("args, message", [
    (["info", "nope"], "unknown backbone 'nope'; closest:"),
    (["info", "vit-0.5m", "--classes", "0"], "--img and --classes must be positive"),
    (["list", "backbones", "--family", "nope"], "no backbone in family 'nope'"),
    (["list", "backbones", "--task", "detection"], "unknown task 'detection'"),
])
def test_list_and_info_bad_input(args, message):
    result = run_cli(*args)
    assert result.code == 2 and message in result.error_line
