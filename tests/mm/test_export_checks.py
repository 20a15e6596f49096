"""Checks of an exported model that always check, on the demo's models briefly trained: verification
on the config's own test images (each at its own size and at two others) that passes in onnxruntime
and OpenVINO and fails on a wrong export; the config's own metric measured on the exported file
beside mmdet's / mmseg's inference (tools/deployment/test_onnx.py); and the export command, which
never leaves a file that failed (or compared nothing) at the requested path."""
import copy
import json
import os

import pytest
import torch
from demo_models import DEMO, DEMO_SEG, ROOT, build, demo_config, fused, with_data

from fastervit_dense.mm.deploy import build_for_export, export_model, exportable
from fastervit_dense.mm.deploy.runtimes import RUNTIMES, open_runtime
from fastervit_dense.mm.deploy.verify import (MIN_COMPARED, summarize, verification_images,
                                              verify_export)
from fastervit_dense.mm.runner import load_config

pytestmark = [pytest.mark.export, pytest.mark.training]

EXPORT = os.path.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
TEST_ONNX = os.path.join(ROOT, 'tools', 'deployment', 'test_onnx.py')
SIZES = [(333, 517)]  # besides each image's own size


def scale_std(model):
    model.data_preprocessor.std = model.data_preprocessor.std * 1.02


def swap_channels(model):
    preprocessor = model.data_preprocessor
    name = '_channel_conversion' if hasattr(preprocessor, '_channel_conversion') else \
        'channel_conversion'  # mmdet's and mmseg's names
    setattr(preprocessor, name, not getattr(preprocessor, name))


def perturb_weight(model):
    """One weight tensor times 1.01: the neck's first lateral convolution."""
    model.neck.lateral_convs[0].conv.weight.data.mul_(1.01)


WRONG = {'std': scale_std, 'channel order': swap_channels, 'one weight by 1%': perturb_weight}


@pytest.fixture(scope='module')
def detector(mask_rcnn_weights, tiny_data):
    cfg = with_data(demo_config(), tiny_data, 'det')
    return cfg, fused(build(cfg, mask_rcnn_weights))


@pytest.fixture(scope='module')
def segmentor(segmentor_checkpoint, tiny_data):
    cfg = with_data(load_config(DEMO_SEG), tiny_data, 'seg')
    return cfg, build_for_export(cfg, segmentor_checkpoint)


def exported(model, path):
    export_model(exportable(model), path, (256, 320))
    return path


def verification(cfg, model, path, runtime='onnxruntime', count=3, sizes=SIZES):
    images, source = verification_images(cfg, None, count, sizes)
    assert source == f"the first {count} image(s) of the config's test set"
    own = [image for label, image in images if not label.endswith(' at 333x517')]
    assert len({tuple(image.shape[-2:]) for image in own}) == count  # their own sizes
    return [report for _, report in verify_export(model, open_runtime(path, runtime, 1), images)]


@pytest.mark.parametrize('kind', ['detector', 'segmentor'])
def test_a_trained_export_verifies_on_the_test_images_in_both_runtimes(kind, request, tmp_path):
    cfg, model = request.getfixturevalue(kind)
    path = exported(model, tmp_path / 'model.onnx')
    for runtime in RUNTIMES:
        reports = verification(cfg, model, path, runtime)
        assert len(reports) == 6, runtime  # 3 images at their own size and at another
        assert summarize(reports) is None, (runtime, reports)
        if kind == 'detector':
            assert sum(r['matched'] for r in reports) >= 3 * MIN_COMPARED


@pytest.mark.parametrize('wrong', WRONG)
@pytest.mark.parametrize('kind', ['detector', 'segmentor'])
def test_a_wrong_export_fails_verification(kind, wrong, request, tmp_path):
    cfg, model = request.getfixturevalue(kind)
    broken = copy.deepcopy(model)
    WRONG[wrong](broken)
    reports = verification(cfg, model, exported(broken, tmp_path / 'wrong.onnx'), count=1,
                           sizes=[])
    assert summarize(reports) == '1 of 1 comparisons disagree', (wrong, reports)


def data_options(data_root, kind):
    if kind == 'det':
        root = os.path.join(str(data_root), 'coco', '')
        return ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
                f'test_evaluator.ann_file={root}annotations/instances_val.json']
    return ['--cfg-options', f'test_dataloader.dataset.data_root={data_root}/ade/']


@pytest.mark.parametrize('kind', [pytest.param('det', marks=pytest.mark.subprocess), 'seg'])
def test_exported_models_score_the_configs_metric_as_pytorch_does(
        kind, detector, segmentor, mask_rcnn_weights, segmentor_checkpoint, tiny_data, tmp_path,
        script_command):
    """``test_onnx.py`` on the demo pair: the config's dataloader and evaluator through the file
    on onnxruntime and OpenVINO and through mmdet's / mmseg's own inference; every metric equal
    within 0.1 points, on a model that has learnt something. The detector's run starts the tool
    as a user does; the segmentor's runs it in this process."""
    if kind == 'det':
        config, model = DEMO, detector[1]
        checkpoint = tmp_path / 'detector.pth'
        torch.save({'state_dict': mask_rcnn_weights, 'meta': {}}, checkpoint)
    else:
        config, model, checkpoint = DEMO_SEG, segmentor[1], segmentor_checkpoint
    path = exported(model, tmp_path / 'model.onnx')
    result = script_command(TEST_ONNX, config, path, '--checkpoint', checkpoint, '--runtime',
                            'onnxruntime', 'openvino', '--threads', '1', '--out',
                            tmp_path / 'result.json', *data_options(tiny_data, kind),
                            new_interpreter=kind == 'det')
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    table = lines[max(i for i, line in enumerate(lines) if line.startswith('metric ')):]
    assert table[0].split() == ['metric', 'PyTorch', 'onnxruntime', 'openvino'], result.stdout
    assert table[-1].startswith('ms per image')
    results = json.loads((tmp_path / 'result.json').read_text())['results']
    reference = results['PyTorch']['metrics']
    # COCO's metrics are shares (0.001 = 0.1 AP points), mmseg's percentages
    tolerance = 0.001 if kind == 'det' else 0.1
    if kind == 'det':
        assert reference['coco/bbox_mAP_50'] >= 0.1 and reference['coco/segm_mAP_50'] >= 0.1
        assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(reference)
    else:
        assert reference['mAcc'] > 30  # more than the background (25% for 4 classes)
        assert {'mIoU', 'aAcc', 'mAcc'} <= set(reference)
    for runtime in RUNTIMES:
        metrics = results[runtime]['metrics']
        assert set(metrics) == set(reference)
        for name, value in reference.items():
            assert abs(metrics[name] - value) <= tolerance + 1e-9, (runtime, name, metrics, value)
        assert results[runtime]['images'] == 4 and results[runtime]['ms_per_image'] > 0


def test_the_export_command_keeps_a_failed_file_aside(detector, mask_rcnn_weights, tiny_data,
                                                      tmp_path, script_command):
    """A detector that keeps nothing (its score threshold above any softmax score), on random
    images (the config's data is not under the working folder): nothing compared, so the file is
    kept beside OUT under a name that says it failed; a trained checkpoint on the test images
    passes and the file lands at OUT; ``--verify none`` writes without verifying, and says so."""
    out = tmp_path / 'model.onnx'
    failed = tmp_path / 'model.failed-verification.onnx'
    # in this process: export_onnx.py is started as a user starts it by
    # tests/mm/test_export_models.py
    result = script_command(EXPORT, DEMO, out, '--cfg-options',
                            'model.test_cfg.rcnn.score_thr=1.0', cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert 'random images: the config\'s test images could not be read' in result.stdout
    assert 'verification failed: nothing compared: 0 detections' in result.stderr
    assert f'the file is kept at {failed}, not at {out}' in result.stderr
    assert failed.exists() and not out.exists()
    assert not any('exporting' in p.name for p in tmp_path.iterdir())

    checkpoint = tmp_path / 'detector.pth'
    torch.save({'state_dict': mask_rcnn_weights, 'meta': {}}, checkpoint)
    result = script_command(EXPORT, DEMO, out, '--checkpoint', checkpoint,
                            *data_options(tiny_data, 'det'), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "on the first 3 image(s) of the config's test set" in result.stdout
    assert 'verified: the exported model agrees with mmdet in 9 comparisons' in result.stdout
    assert out.exists()

    out.unlink()
    result = script_command(EXPORT, DEMO, out, '--verify', 'none', cwd=tmp_path)
    assert result.returncode == 0 and out.exists(), result.stderr[-2000:]
    assert f'written: {out} (not verified: --verify none)' in result.stdout
