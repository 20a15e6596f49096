"""The core beside an installed OpenMMLab: using it loads no OpenMMLab module. (In the core's own
environment, where tests/core runs, nothing of OpenMMLab is installed to load.)"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_USE_THE_CORE = r'''
import json, os, sys, tempfile
import torch
import fastervit_dense
from fastervit_dense import FasterViT, FastViT
from fastervit_dense.converters import convert_file
from fastervit_dense.utils.export import export_onnx
folder = tempfile.mkdtemp()
model = FastViT('t8', out_norm_cfg=dict(type='BN')).eval()
torch.save(model.state_dict(), os.path.join(folder, 'fastvit_t8.pth'))
meta = convert_file(os.path.join(folder, 'fastvit_t8.pth'), os.path.join(folder, 'out.pth'), 'fastvit')
report = FastViT('t8', out_norm_cfg=dict(type='GN', num_groups=4)).load_pretrained(
    os.path.join(folder, 'out.pth'))
tiny = dict(depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
            dim=16, in_dim=8, mlp_ratio=2., hat=[False, False, True, False], layer_scale=None,
            propagation=False, drop_path_rate=0.)
fastervit = FasterViT(tiny).eval()
with torch.no_grad():
    shapes = [tuple(o.shape) for o in fastervit(torch.randn(1, 3, 97, 130))]
    model.switch_to_deploy()(torch.randn(1, 3, 64, 64))
exported = False
try:
    import onnx  # noqa: F401
    export_onnx(model, os.path.join(folder, 'm.onnx'), (64, 64))
    exported = True
except ImportError:
    pass
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmseg'))
print(json.dumps(dict(loaded=loaded, arch=meta['arch'], report=report['loaded'], shapes=shapes,
                      exported=exported)))
'''


@pytest.mark.subprocess
def test_using_the_core_loads_no_openmmlab_module():
    """Building, running, converting, loading and exporting the backbones, in a fresh interpreter,
    with mmengine, mmcv, mmdet and mmseg installed."""
    import importlib.util
    assert all(importlib.util.find_spec(m) for m in ('mmengine', 'mmcv', 'mmdet', 'mmseg'))
    result = subprocess.run([sys.executable, '-c', _USE_THE_CORE], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome['loaded'] == []
    assert outcome['arch'] == 't8' and outcome['report'] > 100
    assert outcome['shapes'] == [[1, 16, 25, 33], [1, 32, 13, 17], [1, 64, 7, 9], [1, 128, 4, 5]]
