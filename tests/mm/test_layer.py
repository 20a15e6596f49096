"""The OpenMMLab layer: the core's backbones registered in mmdet's and mmseg's MODELS, loading through
``init_cfg`` inside mmengine, mmengine's checkpoints read safely, and the registration routes."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fastervit_dense.mm  # noqa: F401
from fastervit_dense import FasterViT, FastViT
from fastervit_dense.checkpoint import load_checkpoint_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A small model with carrier tokens in stages 3 and 4 and propagation, for fast tests.
TINY = dict(depths=[1, 1, 2, 2], num_heads=[1, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
            dim=16, in_dim=8, mlp_ratio=2., hat=[False, False, True, True], layer_scale=None,
            propagation=True, drop_path_rate=0.)


def expected_shapes(model, batch, height, width):
    return [(batch, model.num_features[i], -(-height // 2**(i + 2)), -(-width // 2**(i + 2)))
            for i in model.out_indices]


def retinanet(backbone: dict, in_channels) -> dict:
    """A small RetinaNet config around ``backbone``."""
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=backbone,
        neck=dict(type='FPN', in_channels=list(in_channels), out_channels=32, start_level=0,
                  add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(type='RetinaHead', num_classes=3, in_channels=32, feat_channels=32,
                       stacked_convs=1,
                       anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                             scales_per_octave=1, ratios=[1.0],
                                             strides=[8, 16, 32, 64, 128]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                       target_stds=[1.] * 4),
                       loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        test_cfg=dict(nms_pre=100, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_fastervit_builds_from_each_registry(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='FasterViT', arch=TINY, out_indices=(0, 1, 2, 3)))
    assert isinstance(model, FasterViT)
    outs = model.eval()(torch.randn(1, 3, 64, 80))
    assert [tuple(o.shape) for o in outs] == expected_shapes(model, 1, 64, 80)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_fastvit_builds_from_each_registry(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='FastViT', arch='t8', out_indices=(1, 2, 3)))
    assert isinstance(model, FastViT)
    assert [o.shape[1] for o in model.eval()(torch.randn(1, 3, 64, 64))] == [96, 192, 384]


def test_whole_detector_checkpoint_loads_back(tmp_path):
    """A detector saved by a training run loads (as mmengine's load_from does) into a fresh one, and
    its backbone alone loads through init_cfg."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint, save_checkpoint
    init_default_scope('mmdet')
    arch = dict(depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
                dim=16, in_dim=8, mlp_ratio=2., hat=[False, False, True, False], layer_scale=None,
                propagation=False, drop_path_rate=0.)
    cfg = retinanet(dict(type='FasterViT', arch=arch, out_indices=(1, 2, 3)), [32, 64, 128])
    trained = MODELS.build(cfg).eval()
    path = tmp_path / 'epoch_1.pth'
    save_checkpoint(trained.state_dict(), str(path))
    fresh = MODELS.build(cfg).eval()
    load_checkpoint(fresh, str(path), strict=True)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        for a, b in zip(trained.extract_feat(x), fresh.extract_feat(x)):
            assert torch.equal(a, b)
    backbone = FasterViT(arch=arch, out_indices=(1, 2, 3),
                         init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                       prefix='backbone.'))
    backbone.init_weights()
    with torch.no_grad():
        for a, b in zip(backbone.eval()(x), trained.backbone(x)):
            assert torch.equal(a, b)


def test_loading_keeps_the_process_wide_allowlist(official_fastervit0_checkpoint, tmp_path):
    """After the kit reads a file, mmengine's own loader still accepts mmengine checkpoints."""
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    load_checkpoint_file(official_fastervit0_checkpoint)
    buffer = HistoryBuffer()
    buffer.update(1.0)
    path = tmp_path / 'runner.pth'
    torch.save({'state_dict': {}, 'message_hub': {'log_scalars': {'loss': buffer}}}, path)
    assert _load_checkpoint(str(path))['message_hub']['log_scalars']['loss'].mean() == 1.0


def test_init_cfg_url_downloads_in_an_mmdet_detector(isolated_downloads, server,
                                                     official_fastervit0_checkpoint):
    """``init_cfg=dict(type='Pretrained', checkpoint=URL)`` inside mmdet: mmengine's
    ``init_weights`` downloads once into torch hub's cache and loads the backbone."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    url = server.add('/fastervit_0_224_1k.pth.tar', open(official_fastervit0_checkpoint, 'rb').read())
    init_default_scope('mmdet')
    detector = MODELS.build(retinanet(
        dict(type='FasterViT', arch='0', out_indices=(1, 2, 3),
             init_cfg=dict(type='Pretrained', checkpoint=url)), [128, 256, 512]))
    detector.init_weights()
    assert (isolated_downloads / 'fastervit_0_224_1k.pth.tar').exists()
    assert server.counts['/fastervit_0_224_1k.pth.tar'] == 1
    reference = FasterViT('0', out_indices=(1, 2, 3))
    reference.load_pretrained(str(official_fastervit0_checkpoint))
    ours = detector.backbone.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith('out_norm'):
            assert torch.equal(ours[key], value), key


_MMSEG_FROM_THE_HUB = r'''
import json, torch
import mmseg.utils
from mmengine.registry import MODELS, init_default_scope
import fastervit_dense.mm
from fastervit_dense import FastViT
mmseg.utils.register_all_modules(init_default_scope=False)
init_default_scope('mmseg')
segmentor = MODELS.build(dict(
    type='EncoderDecoder', data_preprocessor=dict(type='SegDataPreProcessor'),
    backbone=dict(type='FastViT', arch='t8',
                  init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_t8.apple_in1k')),
    decode_head=dict(type='FCNHead', in_channels=384, in_index=3, channels=16, num_convs=1,
                     num_classes=3)))
segmentor.init_weights()
reference = FastViT('t8')
reference.load_pretrained('hf-hub:timm/fastvit_t8.apple_in1k')
same = all(torch.equal(segmentor.backbone.state_dict()[k], v)
           for k, v in reference.state_dict().items() if not k.startswith('out_norm'))
print(json.dumps(dict(same=same)))
'''


@pytest.mark.subprocess
def test_init_cfg_hub_id_in_an_mmseg_segmentor_offline(tmp_path):
    """``checkpoint='hf-hub:...'`` inside mmseg, from an ``HF_HOME`` filled by hand, offline."""
    from safetensors.torch import save

    from fastervit_dense.testing.reference import timm_fastvit
    from fastervit_dense.testing.servers import fill_hf_cache
    weights = save({k: v.contiguous() for k, v in timm_fastvit('t8', seed=6).state_dict().items()})
    fill_hf_cache(tmp_path / 'hf', 'timm/fastvit_t8.apple_in1k', {'model.safetensors': weights})
    env = dict(os.environ, HF_HOME=str(tmp_path / 'hf'), HF_HUB_OFFLINE='1',
               HF_ENDPOINT='http://127.0.0.1:9')
    result = subprocess.run([sys.executable, '-c', _MMSEG_FROM_THE_HUB], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == dict(same=True)


def test_core_loading_report_reaches_mmengines_logger(official_fastervit0_checkpoint):
    """With the OpenMMLab layer loaded, the core's one-line loading report goes to mmengine's
    current logger (its console and the run's log file)."""
    import logging

    from mmengine.logging import MMLogger
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Keep()
    logger.addHandler(handler)
    try:
        FasterViT('0').load_pretrained(str(official_fastervit0_checkpoint))
    finally:
        logger.removeHandler(handler)
    assert any(m.startswith("FasterViT(arch='0'): loaded ") and '; missing 8: out_norm0.weight' in m
               for m in messages), messages


def test_kit_imports_and_registers_its_backbones():
    import fastervit_dense
    import fastervit_dense.mm  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG):
        assert registry.get('FasterViT') is fastervit_dense.FasterViT
        assert registry.get('FastViT') is fastervit_dense.FastViT


_WHY_HISTORY_BUFFER = r'''
import io, json, torch
from mmengine.logging.history_buffer import HistoryBuffer


def round_trip():
    buffer = HistoryBuffer()
    buffer.update(2.0)
    buffer.update(4.0)
    data = io.BytesIO()
    torch.save({'message_hub': buffer}, data)
    data.seek(0)
    # Every type it holds allowed, as the layer allows them (numpy arrays, dtypes, scalars).
    import numpy as np
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
    torch.serialization.add_safe_globals(
        [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
         *{type(np.dtype(code)) for code in 'bBhHiIlLqQefdgFDG?'}])
    try:
        loaded = torch.load(data, weights_only=True)['message_hub']
    except Exception as error:
        return 'refused: ' + ' '.join(str(error).split())
    return f'mean {loaded.mean()}'


before = round_trip()
import fastervit_dense.mm  # noqa: E402,F401 (the one place the layer changes a third-party class)
print(json.dumps(dict(before=before, after=round_trip())))
'''


@pytest.mark.subprocess
def test_why_the_layer_changes_mmengines_history_buffer():
    """mmengine's HistoryBuffer pickles a class-wide table of functions, which only ``getattr``
    could restore: a checkpoint holding one (every training checkpoint's message hub) cannot be
    read with ``weights_only=True`` unless its pickled state leaves the table out, which is what
    importing the OpenMMLab layer changes (and nothing else of a third-party class)."""
    result = subprocess.run([sys.executable, '-c', _WHY_HISTORY_BUFFER], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome['before'].startswith('refused: ') and 'getattr' in outcome['before'], outcome
    assert outcome['after'] == 'mean 3.0'
