"""Pick a segmentation backbone by name and put a head on it.

A segmentation backbone is a registered backbone whose ``tasks`` include ``"segmentation"``; its
builder takes ``img_size`` (the training crop) and returns a module whose ``forward(x)`` gives
four maps at strides 4, 8, 16, 32 and whose ``out_channels`` lists their widths. It may set
``recipe_kind`` to ``"transformer"`` (AdamW recipe, the default) or ``"cnn"`` (SGD recipe).
"""

from __future__ import annotations

from vbench import registry
from vbench.errors import VbenchError
from vbench.segmentation.heads import Segmentor

TASK = "segmentation"


def _keys(spec) -> set[str]:
    return {key.lower() for key in (spec.name, *spec.aliases, *spec.paper_names)}


def resolve_segmentation_backbone(name: str) -> registry.BackboneSpec:
    """The segmentation backbone called ``name`` (its name, an alias, a paper name, or name + "-seg").

    Segmentation backbones are looked up first, so ``swin-s`` or ``LKCA-B`` finds the segmentation
    model even where a classification model shares that paper name; a name that only finds a
    classification backbone is a VbenchError.
    """
    key = name.lower()
    segmentation = registry.list_backbones(task=TASK)
    for candidate in (key, f"{key}-seg"):
        found = [spec for spec in segmentation if candidate in _keys(spec)]
        if found:
            return found[0]
    available = ", ".join(spec.name for spec in segmentation)
    try:
        spec = registry.get_backbone(name)
    except VbenchError:
        raise VbenchError(f"unknown segmentation backbone {name!r}; segmentation backbones: {available}") from None
    raise VbenchError(f"backbone {spec.name!r} (family {spec.family}) is classification-only and gives no "
                      f"feature pyramid; segmentation backbones: {available}")


def build_segmentor(backbone: str, head: str = "upernet", num_classes: int = 150, crop_size: int = 512,
                    **backbone_overrides) -> Segmentor:
    """Backbone ``backbone`` (built for ``crop_size`` crops) under ``head`` ("upernet" or "fpn")."""
    spec = resolve_segmentation_backbone(backbone)
    model = spec.build(img_size=crop_size, num_classes=num_classes, **backbone_overrides)
    return Segmentor(model, head=head, num_classes=num_classes)


def recipe_kind(segmentor: Segmentor) -> str:
    return getattr(segmentor.backbone, "recipe_kind", "transformer")
