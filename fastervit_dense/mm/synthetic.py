"""Small deterministic datasets of drawn shapes, for demos and end-to-end tests without downloads.

* Instances, in COCO format: ``ROOT/coco/{train,val}/*.jpg`` and
  ``ROOT/coco/annotations/instances_{train,val}.json`` with boxes and RLE masks of what is visible
  (later shapes occlude earlier ones).
* Semantic segmentation, in ADE20K's layout: ``ROOT/ade/images/{training,validation}/*.jpg`` and
  ``ROOT/ade/annotations/{training,validation}/*.png``. Label 0 is unused (ADE20K configs drop it with
  ``reduce_zero_label``), 1 is background, 2.. are the shape classes.

Images vary in size and aspect (non-square, not multiples of 32), hold several classes that overlap,
small objects among them, on textured backgrounds. The same seed gives the same files.

The demo (``tools/demo.py``) and ``tools/make_synthetic_data.py`` make their data with it; it needs
OpenCV and NumPy, which the OpenMMLab layer declares.
"""
import json
import os
import os.path as osp
from typing import Sequence, Tuple

import cv2
import numpy as np

CLASSES = ('rectangle', 'ellipse', 'triangle')
#: BGR colour ranges per class: shape classes are told apart by shape and, loosely, by colour.
_BASE_COLOURS = {'rectangle': (60, 80, 200), 'ellipse': (200, 120, 40), 'triangle': (50, 190, 60)}
SEG_CLASSES = ('background', ) + CLASSES
SEG_PALETTE = [[0, 0, 0], [220, 60, 60], [60, 120, 220], [60, 200, 80]]


def _shape_polygon(kind: str, rng: np.random.Generator, height: int, width: int, small: bool):
    scale = min(height, width)
    size = rng.uniform(0.06, 0.12) * scale if small else rng.uniform(0.16, 0.38) * scale
    cx = rng.uniform(size * 0.5, width - size * 0.5)
    cy = rng.uniform(size * 0.5, height - size * 0.5)
    if kind == 'rectangle':
        w, h = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
        pts = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2],
                        [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    elif kind == 'ellipse':
        axes = (max(2, int(size / 2 * rng.uniform(0.6, 1.0))), max(2, int(size / 2 * rng.uniform(0.6, 1.0))))
        pts = cv2.ellipse2Poly((int(cx), int(cy)), axes, int(rng.uniform(0, 180)), 0, 360, 10)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        pts = np.stack([cx + size / 1.6 * np.cos(angles), cy + size / 1.6 * np.sin(angles)], 1)
    return np.round(pts).astype(np.int32)


def draw_image(rng: np.random.Generator, height: int, width: int, max_objects: int):
    """An image, the per-instance visible masks and their classes."""
    background = rng.integers(90, 170, size=3)
    image = np.empty((height, width, 3), np.float32)
    image[:] = background
    image += rng.normal(0, 12, size=(height, width, 1))  # texture
    yy, xx = np.mgrid[0:height, 0:width]
    image += 25 * np.sin(xx / rng.uniform(8, 30) + rng.uniform(0, 6))[..., None]
    owner = np.full((height, width), -1, np.int32)
    labels = []
    for index in range(int(rng.integers(2, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        kind = CLASSES[label]
        polygon = _shape_polygon(kind, rng, height, width, small=rng.random() < 0.3)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [polygon], 1)
        colour = np.clip(np.array(_BASE_COLOURS[kind]) + rng.integers(-35, 36, size=3), 0, 255)
        image[mask > 0] = colour
        owner[mask > 0] = index
        labels.append(label)
    image = np.clip(image, 0, 255).astype(np.uint8)
    masks = [(owner == i) for i in range(len(labels))]
    return image, masks, labels


def _sizes(rng: np.random.Generator, size_range: Tuple[int, int]):
    low, high = size_range
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def make_instance_dataset(root: str, num_train: int = 120, num_val: int = 30, seed: int = 0,
                          size_range: Tuple[int, int] = (160, 320), max_objects: int = 5) -> dict:
    """Writes the COCO-format instance dataset; returns the annotation file paths."""
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(seed)
    folder = osp.join(root, 'coco')
    os.makedirs(osp.join(folder, 'annotations'), exist_ok=True)
    paths = {}
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(folder, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            height, width = _sizes(rng, size_range)
            image, masks, labels = draw_image(rng, height, width, max_objects)
            name = f'{split}_{image_id:05d}.jpg'
            cv2.imwrite(osp.join(folder, split, name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=name, height=height, width=width))
            for mask, label in zip(masks, labels):
                area = int(mask.sum())
                if area < 16:  # hidden behind later shapes
                    continue
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
                rle['counts'] = rle['counts'].decode('ascii')
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                        category_id=label + 1, segmentation=rle, area=area,
                                        bbox=[x, y, w, h], iscrowd=0))
        categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
        path = osp.join(folder, 'annotations', f'instances_{split}.json')
        with open(path, 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
        paths[split] = path
    return paths


def make_semantic_dataset(root: str, num_train: int = 120, num_val: int = 30, seed: int = 1,
                          size_range: Tuple[int, int] = (160, 320), max_objects: int = 5) -> str:
    """Writes the ADE20K-layout semantic dataset; returns its folder."""
    rng = np.random.default_rng(seed)
    folder = osp.join(root, 'ade')
    for split, count in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(folder, 'images', split), exist_ok=True)
        os.makedirs(osp.join(folder, 'annotations', split), exist_ok=True)
        for index in range(count):
            height, width = _sizes(rng, size_range)
            image, masks, labels = draw_image(rng, height, width, max_objects)
            label_map = np.ones((height, width), np.uint8)  # 1: background
            for mask, label in zip(masks, labels):
                label_map[mask] = label + 2
            name = f'{split}_{index:05d}'
            cv2.imwrite(osp.join(folder, 'images', split, name + '.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(folder, 'annotations', split, name + '.png'), label_map)
    return folder


def make_datasets(root: str, num_train: int = 120, num_val: int = 30, seed: int = 0,
                  size_range: Sequence[int] = (160, 320)) -> dict:
    instances = make_instance_dataset(root, num_train, num_val, seed, tuple(size_range))
    semantic = make_semantic_dataset(root, num_train, num_val, seed + 1, tuple(size_range))
    return dict(instances=instances, semantic=semantic)
