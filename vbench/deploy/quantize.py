"""INT8 by post-training static quantization, calibrated on training images:

- ONNX Runtime: ``onnxruntime.quantization.quantize_static`` in the QDQ format (QuantizeLinear/DequantizeLinear
  pairs that the CPU provider fuses into integer kernels), activations uint8 and weights int8 per channel
  (the U8S8 pair that x86 VNNI and AMX run), MinMax calibration, after ORT's recommended pre-processing
  (``quant_pre_process``: shape inference and graph optimisation);
- OpenVINO: ``nncf.quantize`` (the ``TRANSFORMER`` model type for transformer backbones: mixed preset,
  SmoothQuant, the attention's softmax left in float).

The calibration images are ``count`` training images drawn with a fixed seed (the same for every backbone and
runtime), as the evaluation sees them (centre images, normalised); ``Calibration.record`` says which, and every
INT8 result keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CALIBRATION_SEED = 0
CALIBRATION_BATCH = 32  # images per batch fed to ONNX Runtime's calibrator


@dataclass(frozen=True)
class Calibration:
    images: torch.Tensor  # float32 [N, 3, H, W], normalised as for evaluation
    record: dict = field(default_factory=dict)  # which images: split, count, seed, indices' sha256


def calibration_set(train_images: torch.Tensor, normalize, count: int, seed: int = CALIBRATION_SEED) -> Calibration:
    """``count`` training images (uint8 [N,3,H,W]) drawn without replacement by ``seed``, in index order, made
    float by ``normalize`` (the evaluation's)."""
    count = min(count, len(train_images))
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(train_images), generator=generator)[:count].sort().values
    images = normalize(train_images[indices]).float().cpu()
    digest = hashlib.sha256(indices.numpy().astype(np.int64).tobytes()).hexdigest()[:16]
    record = {"split": "train", "images": count, "seed": seed, "indices_sha256": digest,
              "first_indices": indices[:8].tolist()}
    return Calibration(images, record)


@contextlib.contextmanager
def quiet():
    """The quantisers' progress bars, log lines and warnings kept out of vbench's output."""
    loggers = [logging.getLogger(name) for name in ("nncf", "onnxruntime", "root")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def quantize_onnx(model_path: Path, output: Path, calibration: Calibration, input_name: str) -> Path:
    """The fp32 ONNX model at ``model_path`` as a QDQ INT8 model at ``output``."""
    # lazy: an optional dependency (vbench[deploy]), imported only to quantise
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration.images.split(CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch.numpy()}

    prepared = output.with_name(output.stem + "-prepared.onnx")
    with quiet():
        try:
            quant_pre_process(str(model_path), str(prepared))
        except Exception:  # noqa: BLE001 - pre-processing only helps; quantise the model as exported instead
            prepared = model_path
        quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return output


def quantize_openvino(model, calibration: Calibration, transformer: bool):
    """An OpenVINO model quantised to INT8 by NNCF, one calibration image per statistics step."""
    # lazy: an optional dependency (vbench[deploy]), imported only to quantise
    import nncf

    images = [image[None].numpy() for image in calibration.images]
    with quiet():
        return nncf.quantize(model, nncf.Dataset(images), subset_size=len(images),
                             model_type=nncf.ModelType.TRANSFORMER if transformer else None)
