"""Checks of the environment, not of the kit (``make check-env``): the verified stack of
``requirements/lock.txt`` is what is installed, and its compiled parts run on this machine."""
import importlib.metadata as metadata
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/env_checks/..


def locked_versions() -> dict:
    versions = {}
    for line in open(os.path.join(ROOT, 'requirements', 'lock.txt')):
        match = re.match(r'([A-Za-z0-9_.-]+)==([^\s;]+)', line)
        if match:
            versions[match.group(1).lower().replace('_', '-')] = match.group(2)
    return versions


def test_lock_file_pins_the_stack():
    locked = locked_versions()
    for package in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'timm',
                    'fastervit', 'numpy', 'onnxruntime'):
        assert package in locked, package


@pytest.mark.parametrize('package', sorted(locked_versions()))
def test_installed_versions_are_the_locked_ones(package):
    installed = metadata.version(package)
    assert installed.split('+')[0] == locked_versions()[package]
    if package == 'torch':
        # The CPU-only local wheel breaks torchvision's compiled ops; the standard build is required.
        assert '+cpu' not in installed


def test_framework_model_packages_import():
    import mmdet.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    assert DET.get('SwinTransformer') is not None
    assert SEG.get('UPerHead') is not None


def test_mmcv_compiled_nms_on_cpu():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)


def test_mmcv_compiled_roi_align_on_cpu():
    from mmcv.ops import RoIAlign
    feature = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feature, rois)
    # Each bin samples its centre: (1, 1), (1, 3), (3, 1), (3, 3) bilinearly over the 4x4 ramp.
    assert torch.allclose(out.flatten(), torch.tensor([5., 7., 13., 15.]))


def test_torchvision_compiled_ops():
    from torchvision.ops import box_iou, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.]])
    assert torch.allclose(box_iou(boxes, boxes)[0, 1], torch.tensor(0.5))
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.4).tolist() == [0]


def test_timm_fastvit_runs():
    import timm
    model = timm.create_model('fastvit_t8', pretrained=False, features_only=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [48, 96, 192, 384]
