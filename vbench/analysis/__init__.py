"""What the models see and how far their confidence can be trusted, measured on finished runs (features layer):

- ``erf``: effective receptive fields (RepLKNet's method), ``vbench erf``;
- ``shape_bias``: shape against texture decisions on cue-conflict images (Geirhos et al.), ``vbench shape-bias``;
- ``calibration``: ECE, NLL and Brier before and after temperature scaling, ``vbench calibration`` (the metrics
  themselves are ``vbench.reporting.calibration``, lower down, which ``vbench compare`` and ``vbench robustness``
  share; per-class errors are ``vbench.reporting.confusion``);
- ``runs``: the finished runs an analysis evaluates and their models;
- ``report``: ``vbench report --erf / --shape-bias / --calibration`` and the charts of ``vbench plot``.

Each result is a row of the store's ``evaluations`` table (kinds ``erf``, ``shape-bias``, ``calibration``), kept
as soon as it is measured. The submodules are not imported here: each command imports the one it runs.
"""
