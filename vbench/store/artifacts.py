"""The files a run leaves beside its store, each in the store's own folder (named after its identity):
checkpoints (``vbench.store.checkpoint``), final weights (safetensors) and per-image predictions (``.npz``)."""

from __future__ import annotations

from pathlib import Path

from vbench.errors import VbenchError, first_line
from vbench.paths import atomic_path
from vbench.store.checkpoint import Checkpoints
from vbench.store.predictions import ClassificationPredictions, load_predictions
from vbench.store.predictions import predictions_path as _predictions_file

KINDS = ("checkpoints", "weights", "predictions")


def weights_path(store, run_id: int) -> Path:
    return store.artifact_dir("weights") / f"run-{run_id}.safetensors"


def predictions_path(store, run_id: int) -> Path:
    return _predictions_file(store.artifact_dir("predictions"), run_id)


def stored_probabilities(store, run) -> ClassificationPredictions | None:
    """The run's kept predictions when they hold class probabilities, else None."""
    path = predictions_path(store, run.id)
    if not path.is_file():
        return None
    predictions = load_predictions(path)
    if not isinstance(predictions, ClassificationPredictions) or not predictions.has_probabilities:
        return None
    return predictions


def save_weights(path: Path, model) -> Path:
    """The model's state as safetensors, written atomically (shared tensors are handled by safetensors)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from safetensors.torch import save_model

    with atomic_path(path, sync=True) as temporary:
        save_model(model, str(temporary))
    return path


def load_weights(path: Path, model):
    """Fill ``model`` with the weights at ``path``; a missing or unreadable file is one error."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from safetensors.torch import load_model

    if not path.is_file():
        raise VbenchError(f"no weights at {path}; the run did not finish, or its files were deleted")
    try:
        load_model(model, str(path))
    except Exception as exc:  # noqa: BLE001 - damaged or of another model
        raise VbenchError(f"cannot load the weights {path}: {first_line(exc)}") from None
    return model


def run_files(store, run_id: int) -> dict[str, Path]:
    """The files of a run that exist now."""
    candidates = {"checkpoint": Checkpoints(store.artifact_dir("checkpoints"), store.store_id).path(run_id),
                  "weights": weights_path(store, run_id), "predictions": predictions_path(store, run_id)}
    return {kind: path for kind, path in candidates.items() if path.exists()}
