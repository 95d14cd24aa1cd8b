"""Deployment cost: the final weights of finished runs exported, checked and timed on real runtimes.

``vbench deploy`` (``vbench.deploy.evaluate``): per run, runtime (``vbench.deploy.runtimes``: torch,
torch-compile, onnxruntime, openvino) and precision (fp32, bf16, int8), the ONNX export (``export``), INT8 by
post-training static quantisation (``quantize``), parity with PyTorch, top-1 on the whole test split, latency
and throughput (``latency``), each result stored as soon as it is measured. ``vbench report --deploy``
(``report``) and the leaderboard's deployment page read them back.
"""

from vbench.deploy.evaluate import KIND, DeployOutcome, DeployRequest, Setting, deploy, parse_request
from vbench.deploy.runtimes import PRECISIONS, RUNTIMES, Runtime, register_runtime

__all__ = ["KIND", "PRECISIONS", "RUNTIMES", "DeployOutcome", "DeployRequest", "Runtime", "Setting", "deploy",
           "parse_request", "register_runtime"]
