"""Hostile and broken inputs through the full pipelines: each works, or stops with a message naming
the file and the problem; nothing fails deep inside a backbone with a reshape error."""
import os

import cv2
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DET = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py')
SEG = os.path.join(ROOT, 'configs', 'demo', 'fpn_fastervit-0_synthetic.py')


def write_images(folder):
    rng = np.random.default_rng(0)
    images = {
        'tiny_1x1.png': rng.integers(0, 255, (1, 1, 3), dtype=np.uint8),
        'tiny_16x16.png': rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
        'strip_32x2000.png': rng.integers(0, 255, (32, 2000, 3), dtype=np.uint8),
        'tall_2000x32.png': rng.integers(0, 255, (2000, 32, 3), dtype=np.uint8),
        'gray.png': rng.integers(0, 255, (120, 90), dtype=np.uint8),
        'alpha.png': rng.integers(0, 255, (100, 140, 4), dtype=np.uint8),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = str(folder / name)
        cv2.imwrite(paths[name], image)
    corrupted = folder / 'corrupted.jpg'
    corrupted.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    paths['corrupted.jpg'] = str(corrupted)
    return paths


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp('hostile'))


def test_detector_inference_on_every_image(images):
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(DET)
    cfg.test_dataloader.dataset.pipeline = [
        p for p in cfg.test_dataloader.dataset.pipeline if p['type'] != 'LoadAnnotations']
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # random weights: keep what the heads find
    model = init_detector(cfg, checkpoint=None, device='cpu')
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    for name, path in images.items():
        if name == 'corrupted.jpg':
            with pytest.raises(Exception, match='corrupted.jpg'):
                inference_detector(model, path)
            continue
        result = inference_detector(model, path)
        height, width = cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[:2]
        assert tuple(result.ori_shape) == (height, width), name
        found = result.pred_instances
        count = len(found)
        assert found.bboxes.shape == (count, 4) and torch.isfinite(found.bboxes).all(), name
        assert (found.bboxes[:, 0::2] >= 0).all() and (found.bboxes[:, 0::2] <= width).all(), name
        assert (found.bboxes[:, 1::2] >= 0).all() and (found.bboxes[:, 1::2] <= height).all(), name
        assert (found.bboxes[:, 2:] >= found.bboxes[:, :2]).all(), name
        assert ((found.scores >= 0) & (found.scores <= 1)).all(), name
        assert ((found.labels >= 0) & (found.labels < num_classes)).all(), name
        assert found.masks.shape == (count, height, width) and found.masks.dtype == torch.bool
        if min(height, width) >= 90:  # images a detector can find something in
            assert count > 0, name


def test_segmentor_inference_on_every_image(images):
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    cfg = Config.fromfile(SEG)
    cfg.test_pipeline = [p for p in cfg.test_pipeline if p['type'] != 'LoadAnnotations']
    model = init_model(cfg, checkpoint=None, device='cpu')
    for name, path in images.items():
        if name == 'corrupted.jpg':
            with pytest.raises(Exception, match='corrupted.jpg'):
                inference_model(model, path)
            continue
        result = inference_model(model, path)
        height, width = cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[:2]
        assert tuple(result.pred_sem_seg.data.shape[-2:]) == (height, width), name


@pytest.mark.parametrize('size', [(1, 1), (16, 16), (32, 2000), (2000, 32)])
def test_backbones_train_at_extreme_sizes(size):
    from fastervit_dense import FasterViT, FastViT
    for model in (FasterViT('0'), FastViT('t8')):
        model.train()
        outs = model(torch.randn(2, 3, *size))
        sum(o.square().mean() for o in outs).backward()
        assert all(torch.isfinite(o).all() for o in outs)


def test_corrupted_file_in_a_training_set_is_named(tmp_path):
    from fastervit_dense.mm.synthetic import make_semantic_dataset
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    folder = make_semantic_dataset(str(tmp_path), num_train=3, num_val=1, seed=2)
    broken = os.path.join(folder, 'images', 'training', 'training_00001.jpg')
    with open(broken, 'wb') as f:
        f.write(b'\x00\x01 truncated')
    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')
    cfg = Config.fromfile(SEG)
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = folder + '/'
    dataset = DATASETS.build(dataset_cfg)
    with pytest.raises(Exception, match='training_00001.jpg'):
        for index in range(len(dataset)):
            dataset[index]
