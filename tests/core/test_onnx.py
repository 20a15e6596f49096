"""ONNX export with dynamic batch, height and width: one file, every size."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastervit_dense import FasterViT, FastViT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
                      dynamic_axes={'x': {0: 'b', 2: 'h', 3: 'w'}}, opset_version=17, dynamo=False)
    run_onnx(path, model, SIZES)


def test_export_tool_writes_a_dynamic_upernet_segmentor(tmp_path):
    config = os.path.join(ROOT, 'configs', 'fastervit', 'upernet_fastervit-0_8xb2-160k_ade20k-512x512.py')
    out = tmp_path / 'upernet.onnx'
    result = subprocess.run([sys.executable, 'tools/deployment/export_onnx.py', config, str(out),
                             '--what', 'model', '--shape', '256', '256',
                             '--verify', '320x480,97x300,128x128'],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    differences = [float(line.rsplit(' ', 1)[1]) for line in result.stdout.splitlines()
                   if 'max relative difference' in line]
    assert len(differences) == 3 and max(differences) < 1e-3, result.stdout


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (13, 29), (32, 32), (6, 100)])
@pytest.mark.parametrize('cells', [1, 2, 3, 6])
def test_matrix_adaptive_pooling_equals_pytorch(size, cells):
    from fastervit_dense.deploy import MatrixAdaptiveAvgPool2d
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = torch.nn.AdaptiveAvgPool2d(cells)(x)
    torch.testing.assert_close(MatrixAdaptiveAvgPool2d(cells)(x), expected)
