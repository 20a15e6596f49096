"""What version 0.1.0 of the kit wrote keeps loading: state-dict keys of every backbone, converted
ImageNet files, and a training checkpoint of a segmentor (evaluated, loaded strictly with the same
outputs, resumed), with a config that imports the package as configs of that version did.

The files under ``tests/data/v0.1.0`` were written by that version (see ``make_fixtures.py`` there).
"""
import json
import os
import re

import pytest
import torch

from fastervit_dense import FasterViT, FastViT
from fastervit_dense.testing.reference import (official_fastervit, randomize_,
                                               save_official_checkpoint, timm_fastvit)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, 'tests', 'data', 'v0.1.0')
CONFIG = os.path.join(FIXTURES, 'fpn_fastervit-tiny_synthetic.py')
PRESETS = {'fastervit-0': lambda: FasterViT('0'), 'fastervit-3': lambda: FasterViT('3'),
           'fastervit-4-21k-224': lambda: FasterViT('4-21k-224'),
           'fastvit-t8': lambda: FastViT('t8'), 'fastvit-sa12': lambda: FastViT('sa12'),
           'fastvit-sa12-deploy': lambda: FastViT('sa12', deploy=True),
           'fastvit-mci3': lambda: FastViT('mci3')}


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_state_dict_keys_and_shapes_are_those_of_version_0_1_0(name):
    """The same keys and shapes, but for the weights of stages after the last output, which are
    no longer built (MobileCLIP's mci3 has a fifth stage that the default outputs do not reach);
    a state dict of 0.1.0's layout still loads strictly (tests/core/test_unbuilt_stages.py)."""
    expected = json.load(open(os.path.join(FIXTURES, 'keys.json')))[name]
    with torch.device('meta'):
        model = PRESETS[name]()
    unbuilt = {k for k in expected if model.is_unbuilt_key(k)}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {
        k: v for k, v in expected.items() if k not in unbuilt}
    assert bool(unbuilt) == (name == 'fastvit-mci3')


@pytest.mark.parametrize('kind', ['fastervit', 'fastvit'])
def test_converters_write_what_version_0_1_0_wrote(tmp_path, kind, converter_command):
    expected = json.load(open(os.path.join(FIXTURES, 'converted.json')))[kind]
    if kind == 'fastervit':
        src = save_official_checkpoint(randomize_(official_fastervit('0', (224, 224)), seed=1),
                                       tmp_path / 'fastervit_0_224_1k.pth.tar')
    else:
        src = tmp_path / 'fastvit_t8.pth'
        torch.save(timm_fastvit('t8', seed=2).state_dict(), src)
    dst = tmp_path / 'converted.pth'
    result = converter_command(f'{kind}2mm.py', src, dst)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = torch.load(dst, weights_only=True)
    meta = {k: v for k, v in saved['meta'].items() if k != 'source_sha256'}
    assert meta == {k: v for k, v in expected['meta'].items() if k != 'source_sha256'}
    tensors = {k: [list(v.shape), float(v.double().sum())] for k, v in saved['state_dict'].items()}
    assert tensors.keys() == expected['tensors'].keys()
    for key, (shape, total) in expected['tensors'].items():
        assert tensors[key][0] == shape, key
        assert tensors[key][1] == pytest.approx(total, rel=1e-9, abs=1e-9), key


def _data_options(root):
    return [f'{loader}.dataset.data_root={root}/ade/'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


_LOAD_AS_MMSEG_DOES = r'''
import sys, torch
import mmseg.utils
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
config, checkpoint, outputs = sys.argv[1:]
cfg = Config.fromfile(config)  # imports custom_imports, here the package itself
assert cfg.custom_imports.imports == ['fastervit_dense']
mmseg.utils.register_all_modules(init_default_scope=False)
init_default_scope('mmseg')
model = MODELS.build(cfg.model)
load_checkpoint(model, checkpoint, strict=True)
expected = torch.load(outputs, weights_only=True)
with torch.no_grad():
    logits = model.eval()._forward(expected['input'])
torch.testing.assert_close(logits, expected['logits'], atol=1e-5, rtol=1e-4)
print('same outputs')
'''


@pytest.mark.subprocess
def test_segmentor_checkpoint_of_version_0_1_0_loads_strictly_with_the_same_outputs(
        script_output):
    """As mmseg's own tools do it, in a fresh process: the config's ``custom_imports`` names the
    package itself (as 0.1.0's configs did), which registers the backbones."""
    output = script_output('-c', _LOAD_AS_MMSEG_DOES, CONFIG, os.path.join(FIXTURES, 'iter_2.pth'),
                           os.path.join(FIXTURES, 'outputs.pth'), new_interpreter=True)
    assert 'same outputs' in output


_MIOU_BY_HAND = r'''
import glob, os, sys
import cv2, numpy as np
import mmseg.utils
from mmengine.config import Config
from mmseg.apis import inference_model, init_model
config, checkpoint, root = sys.argv[1:]
cfg = Config.fromfile(config)
mmseg.utils.register_all_modules(init_default_scope=False)
cfg.test_pipeline = [p for p in cfg.test_pipeline if p['type'] != 'LoadAnnotations']
model = init_model(cfg, checkpoint, device='cpu')
classes = cfg.model.decode_head.num_classes
intersection, union = np.zeros(classes), np.zeros(classes)
for image in sorted(glob.glob(os.path.join(root, 'images', 'validation', '*.jpg'))):
    name = os.path.splitext(os.path.basename(image))[0] + '.png'
    label = cv2.imread(os.path.join(root, 'annotations', 'validation', name), cv2.IMREAD_GRAYSCALE)
    label = label.astype(np.int64) - 1  # reduce_zero_label: 0 is ignored, 1.. become 0..
    prediction = inference_model(model, image).pred_sem_seg.data[0].numpy()
    valid = label >= 0
    for c in range(classes):
        predicted, actual = (prediction == c) & valid, (label == c) & valid
        intersection[c] += (predicted & actual).sum()
        union[c] += (predicted | actual).sum()
present = union > 0
print(f'mIoU by hand: {100 * (intersection[present] / union[present]).mean():.2f}')
'''


@pytest.mark.subprocess
@pytest.mark.training
def test_segmentor_checkpoint_of_version_0_1_0_evaluates_and_resumes(tiny_data, tmp_path,
                                                                       script_output):
    """mmseg's route through the kit's tools: test the old checkpoint (its mIoU is the one its
    own predictions give, counted by hand), then resume training from it (its generator states
    and message hub are read with weights_only=True). The test tool starts as a user starts it;
    the count by hand and the resumed training run in this process (tests/mm/test_resume.py
    starts the train tool)."""
    output = script_output('tools/test.py', CONFIG, os.path.join(FIXTURES, 'iter_2.pth'),
                           '--work-dir', tmp_path / 'test', '--cfg-options',
                           *_data_options(tiny_data), 'test_dataloader.num_workers=0',
                           'test_dataloader.persistent_workers=False', new_interpreter=True)
    reported = re.findall(r'\bmIoU: ([0-9.]+)', output)
    assert len(reported) == 1, output[-2000:]
    script = tmp_path / 'miou_by_hand.py'
    script.write_text(_MIOU_BY_HAND)
    by_hand = script_output(script, CONFIG, os.path.join(FIXTURES, 'iter_2.pth'),
                            tiny_data / 'ade')
    expected = re.search(r'mIoU by hand: ([0-9.]+)', by_hand).group(1)
    assert float(reported[0]) == pytest.approx(float(expected), abs=0.011), (reported, expected)
    assert 0 < float(expected) < 100
    work_dir = tmp_path / 'resume'
    work_dir.mkdir()
    script_output('tools/train.py', CONFIG, '--work-dir', work_dir, '--resume',
                  os.path.join(FIXTURES, 'iter_2.pth'), '--cfg-options', *_data_options(tiny_data),
                  'train_cfg.max_iters=3', 'train_cfg.val_interval=4',
                  'default_hooks.checkpoint.interval=3', 'train_dataloader.batch_size=2',
                  'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False')
    assert (work_dir / 'iter_3.pth').exists()
