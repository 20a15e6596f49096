"""Times the kit's dataset check (every image decoded as training will) on a generated COCO-format
set of ``--images`` JPEG photos-like images of ``--size`` H W, and prints seconds per 1,000 images.

    python tools/analysis_tools/benchmark_dataset_check.py [--images 1000] [--size 480 640]
        [--folder DIR]

The images (drawn shapes on textured backgrounds, JPEG quality 95, about COCO's typical size by
default) are written once into ``--folder`` (a temporary folder by default, removed afterwards).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import tempfile
import time

import cv2
import numpy as np

from fastervit_dense.mm.dataset_check import check_datasets
from fastervit_dense.mm.synthetic import draw_image
from fastervit_dense.utils.benchmark import cpu_model


def write_images(folder, count, height, width):
    os.makedirs(osp.join(folder, 'images'), exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        name = f'{index:06d}.jpg'
        path = osp.join(folder, 'images', name)
        if not osp.exists(path):
            image, _, _ = draw_image(rng, height, width, max_objects=5)
            cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=index, file_name=name, height=height, width=width))
    annotations = osp.join(folder, 'annotations.json')
    with open(annotations, 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[dict(id=1, name='shape')]), f)
    return annotations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--size', type=int, nargs=2, default=[480, 640], metavar=('H', 'W'))
    parser.add_argument('--folder', default=None, help='keep the generated images here')
    args = parser.parse_args(argv)
    folder = args.folder or tempfile.mkdtemp(prefix='dataset_check_')
    try:
        annotations = write_images(folder, args.images, *args.size)
        cfg = dict(train_dataloader=dict(dataset=dict(
            type='CocoDataset', data_root=folder, ann_file=annotations,
            data_prefix=dict(img='images/'), metainfo=dict(classes=('shape', )),
            pipeline=[dict(type='LoadImageFromFile')])))
        start = time.perf_counter()
        check_datasets(cfg, ('train_dataloader', ), progress=False)
        seconds = time.perf_counter() - start
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    print(f'dataset check: {args.images} JPEG images of {args.size[0]}x{args.size[1]} decoded in '
          f'{seconds:.1f} s: {1000 * seconds / args.images:.1f} s per 1,000 images '
          f'({os.cpu_count()} cores of {cpu_model()})')


if __name__ == '__main__':
    main()
