import os
import sys
import warnings

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The official reference package and mmcv emit deprecation noise that hides real failures.
warnings.filterwarnings('ignore', category=FutureWarning)
warnings.filterwarnings('ignore', category=DeprecationWarning)
warnings.filterwarnings('ignore', message='.*torch.meshgrid.*')

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def official_fastervit0_checkpoint(tmp_path_factory):
    """An official FasterViT-0 checkpoint file (224, windows 7) with random, branch-exercising
    weights, in the published training-checkpoint layout."""
    from reference import official_fastervit, randomize_, save_official_checkpoint
    model = randomize_(official_fastervit('0', (224, 224)), seed=1)
    path = tmp_path_factory.mktemp('official') / 'fastervit_0_224_1k.pth.tar'
    return save_official_checkpoint(model, path)


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """Small generated COCO-format (``coco/``) and ADE20K-layout (``ade/``) datasets: 8 training
    and 4 validation images of 128-200 px, for the tools' end-to-end runs."""
    from fastervit_dense.synthetic import make_datasets
    root = tmp_path_factory.mktemp('data')
    make_datasets(str(root), num_train=8, num_val=4, seed=3, size_range=(128, 200))
    return root
