"""ONNX export with dynamic batch, height and width: one file, every size."""
import os

import numpy as np
import pytest
import torch

from fastervit_dense import FasterViT, FastViT
from fastervit_dense.utils.export import torchscript_exporter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = [(2, 320, 480), (1, 97, 300), (1, 100, 100)]  # 100x100: stage 3 has a single window


def run_onnx(path, model, sizes):
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model(x)
        outputs = session.run(None, {'x': x.numpy()})
        assert len(outputs) == len(expected)
        for o, e in zip(outputs, expected):
            assert o.shape == tuple(e.shape)
            assert np.abs(o - e.numpy()).max() <= 1e-3 * np.abs(e.numpy()).max()


@pytest.mark.parametrize('build', [lambda: FasterViT('0'), lambda: FastViT('sa12').switch_to_deploy()],
                         ids=['fastervit-0', 'fastvit-sa12-fused'])
def test_backbone_exports_once_for_every_size(tmp_path, build):
    model = build().eval()
    with torch.no_grad():  # sizes seen before export must not freeze into the graph
        model(torch.randn(1, 3, 97, 300))
        model(torch.randn(1, 3, 64, 64))
    path = tmp_path / 'backbone.onnx'
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), input_names=['x'],
                      dynamic_axes={'x': {0: 'b', 2: 'h', 3: 'w'}}, opset_version=17,
                      **torchscript_exporter())
    run_onnx(path, model, SIZES)


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (13, 29), (32, 32), (6, 100)])
@pytest.mark.parametrize('cells', [1, 2, 3, 6])
def test_matrix_adaptive_pooling_equals_pytorch(size, cells):
    from fastervit_dense.utils.export import MatrixAdaptiveAvgPool2d
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = torch.nn.AdaptiveAvgPool2d(cells)(x)
    torch.testing.assert_close(MatrixAdaptiveAvgPool2d(cells)(x), expected)


def test_backbone_export_command_line(tmp_path):
    """``tools/deployment/export_backbone.py``: a fused FastViT at sizes other than the traced one;
    an unknown name or a malformed size stops it with the accepted form."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'export_backbone', os.path.join(ROOT, 'tools', 'deployment', 'export_backbone.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = module.main
    out = tmp_path / 'fastvit.onnx'
    assert main(['fastvit-t8', str(out), '--shape', '128', '128', '--verify', '97x300,64x200']) == 0
    assert out.exists()
    with pytest.raises(SystemExit, match='give sizes as HxW'):
        main(['fastvit-t8', str(tmp_path / 'other.onnx'), '--verify', '97by300'])
    with pytest.raises(SystemExit, match='expected "fastervit-ARCH"'):
        main(['resnet-50', str(tmp_path / 'other.onnx')])
    assert not (tmp_path / 'other.onnx').exists()


def test_compare_with_onnxruntime_reports_each_size(tmp_path):
    from fastervit_dense.utils.export import compare_with_onnxruntime, export_onnx
    model = FastViT('t8', out_norm_cfg=None).switch_to_deploy().eval()
    path = tmp_path / 'm.onnx'
    assert export_onnx(model, path, (96, 96)) == ['out0', 'out1', 'out2', 'out3']
    errors = compare_with_onnxruntime(model, path, [(64, 160), (130, 70)])
    assert sorted(errors) == ['130x70', '64x160'] and max(errors.values()) < 1e-3
