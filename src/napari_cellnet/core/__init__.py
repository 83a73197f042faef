"""Shared by both pipelines: reading and writing stacks, axes, the job protocol, devices,
metrics, stratified splits, augmentation, optimisers and the parameter-object machinery.

Mostly numpy; only :mod:`~napari_cellnet.core.device` and :mod:`~napari_cellnet.core.optim`
import torch (import-linter enforces it). Nothing here knows about segmentation or
classification.
"""
