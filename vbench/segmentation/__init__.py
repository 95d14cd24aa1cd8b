"""Semantic segmentation on ADE20K (Tables 6-7 of the LKCA paper), as mmsegmentation runs it.

- ``recipe``: segmentation suites (``suites/ade20k.toml``): pipeline, iteration schedule, optimiser
  per backbone kind; ``load_segmentation_suite``.
- ``ade20k``: the ``ADEChallengeData2016`` loader, mmseg's train/eval pipelines, the fixture writer.
- ``heads``: UPerNet, Semantic FPN, the auxiliary FCN head, MultiLevelNeck, ``Segmentor``.
- ``build``: segmentation backbones by (paper) name, ``build_segmentor``.
- ``metrics``: aAcc / mIoU / mAcc from whole-set histograms.
- ``train``: ``train_segmentor`` (iteration-based loop, evaluations at listed iterations).
- ``run``: suite -> datasets, segmentor, one run, its size.
- ``report``: Tables 6-7 layout, size comparison, mIoU-versus-iterations plot.

A segmentation backbone is any registered backbone with ``"segmentation"`` in its ``tasks`` whose
module returns four maps at strides 4, 8, 16, 32 and lists their widths in ``out_channels``.
"""
