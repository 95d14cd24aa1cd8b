"""The feature-map contract: every built-in classification backbone declares its last spatial feature map, and
the ERF's gradient reaches the input through it; declarations are checked where they are made."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from cli import run_cli

from vbench.analysis.erf import model_scores
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.feature_map import FeatureMap, last_feature_map, parse_feature_map, require_feature_map

SMALLEST = {"twins": 64}  # every other family builds at 32x32 (twins needs a multiple of 64)


@pytest.mark.parametrize("spec", registry.list_backbones(task="classification"), ids=lambda spec: spec.name)
def test_every_classification_backbone_hands_out_its_last_feature_map(spec):
    feature_map = require_feature_map(spec.variant("classification").feature_map, spec.name)
    size = SMALLEST.get(spec.family, 32)
    torch.manual_seed(0)
    model = spec.build(size, 10).eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = last_feature_map(model, feature_map, images)
    assert features.ndim == 4 and features.shape[0] == 2 and min(features.shape[-2:]) >= 1
    assert features.shape[-2] == features.shape[-1]  # a square grid for a square image
    scores, map_size = model_scores(model, feature_map, images)  # the ERF's path: the input gradient through it
    assert map_size == list(features.shape[-2:])
    assert scores.shape == (2, *images.shape[-2:]) and torch.isfinite(scores).all() and (scores > 0).any()


def test_the_map_is_the_models_own():
    """A ViT's map is its last block's tokens on the grid; a timm model's is its forward_intermediates."""
    spec = registry.get_backbone("vit-0.5m")
    model = spec.build(32, 10).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        features = last_feature_map(model, spec.variant().feature_map, images)
        tokens = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(images))))
    assert torch.allclose(features, tokens[:, 1:].transpose(1, 2).reshape(1, -1, 8, 8))
    cait = registry.get_backbone("cait-t")
    model = cait.build(32, 10).eval()
    with torch.no_grad():
        patches = model.patch_transformer(model.dropout(model.to_patch_embedding(images) + model.pos_embedding[:, :64]))
        features = last_feature_map(model, cait.variant().feature_map, images)
    assert torch.allclose(features, patches.transpose(1, 2).reshape(1, -1, 8, 8))


@pytest.mark.parametrize("declaration, parsed", [
    ("timm", FeatureMap("timm")),
    ("tokens:transformer", FeatureMap("tokens", "transformer")),
    ("map:layers.3.2[1]", FeatureMap("map", "layers.3.2", 1)),
    ("none: a sequence model", FeatureMap("none", reason="a sequence model")),
])
def test_declarations_parse(declaration, parsed):
    assert parse_feature_map(declaration) == parsed and parse_feature_map(parsed.text) == parsed


@pytest.mark.parametrize("declaration", ["tokens", "map:", "tokens:a b", "none:", "stage", "timm:x", 3])
def test_a_malformed_declaration_is_one_error_where_it_is_made(declaration):
    with pytest.raises(VbenchError, match="feature_map"):
        registry.register_backbone("bad-map", family="test", feature_map=declaration)(lambda **_: None)


def test_a_backbone_says_why_it_has_no_map_and_info_shows_the_declaration(tmp_path):
    plugin = tmp_path / "no_map.py"
    plugin.write_text(textwrap.dedent('''
        import torch.nn as nn
        from vbench import register_backbone

        @register_backbone("no-map", family="test", feature_map="none: it pools before any spatial map")
        def no_map(img_size=32, num_classes=10):
            """A linear classifier."""
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * img_size * img_size, num_classes))
    '''))
    with pytest.raises(VbenchError, match="has no last spatial feature map: it pools before any spatial map"):
        registry.load_plugin(str(plugin))
        require_feature_map(registry.get_backbone("no-map").variant().feature_map, "no-map")
    info = json.loads(run_cli("info", "lkca-t", "--json").out)
    assert info["feature_map"] == "timm"
    shown = run_cli("info", "no-map", "--plugin", plugin)
    assert "last feature map: none:it pools before any spatial map" in shown.out
