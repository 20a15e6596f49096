"""The demo's models (configs/demo) built, briefly trained and fused for the export tests: the
helpers behind the session fixtures of tests/mm/conftest.py."""
import contextlib
import os
import random

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py')
DEMO_SEG = os.path.join(ROOT, 'configs', 'demo', 'fpn_fastervit-0_synthetic.py')


@contextlib.contextmanager
def threads(count):
    """``count`` PyTorch threads inside (on a shared 2-core machine two threads per training
    process made training several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def demo_config():
    from fastervit_dense.mm.runner import load_config
    return load_config(DEMO)


def build(cfg, state_dict=None, strict=True):
    from fastervit_dense.mm.runner import build_model
    torch.manual_seed(0)
    model = build_model(cfg)
    if state_dict is None:
        model.init_weights()
    else:
        model.load_state_dict(state_dict, strict=strict)
    return model


def train(model, data_root, iters, seed, lr=4e-4):
    """``iters`` AdamW steps of batch 2 on the demo's training pipeline."""
    from mmengine.dataset import pseudo_collate
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DATASETS
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    dataset_cfg = demo_config().train_dataloader.dataset
    dataset_cfg.data_root = f'{data_root}/coco/'
    dataset = DATASETS.build(dataset_cfg)
    model = revert_sync_batchnorm(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    order = np.random.permutation(len(dataset) * (2 * iters // len(dataset) + 1))
    for step in range(iters):
        for group in optimizer.param_groups:
            group['lr'] = lr * min(1.0, (step + 1) / 10)
        indices = order[2 * step:2 * step + 2]
        batch = pseudo_collate([dataset[int(i) % len(dataset)] for i in indices])
        loss, _ = model.parse_losses(model(**model.data_preprocessor(batch, True), mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
    return model.eval()


def fused(model):
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model).eval()
    model.backbone.switch_to_deploy()
    return model


def drawn_image(height, width, seed):
    """Shapes drawn as in the synthetic data, BGR 0-255, (1, 3, H, W) float32."""
    from fastervit_dense.mm.synthetic import draw_image
    image, _, _ = draw_image(np.random.default_rng(seed), height, width, max_objects=5)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().contiguous()


def with_data(cfg, data_root, kind):
    """``cfg`` (a demo config) reading the generated data under ``data_root`` (``tiny_data``)."""
    sub = os.path.join(str(data_root), 'coco' if kind == 'det' else 'ade', '')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = sub
    if kind == 'det':
        cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = os.path.join(
            sub, 'annotations', 'instances_val.json')
    return cfg


def train_segmentor(data_root, work_dir, iters=60):
    """The demo segmentor (Semantic FPN, FasterViT-0) trained ``iters`` steps by mmengine's runner
    on the generated data at a constant learning rate after a short warm-up; returns the
    checkpoint's path. 60 steps are the fewest after which it predicts more than the background
    on the validation images (mAcc 39.7% against 25.0% at 30 steps)."""
    from fastervit_dense.mm.runner import build_runner, load_config
    cfg = with_data(load_config(DEMO_SEG, work_dir=str(work_dir)), data_root, 'seg')
    cfg.train_cfg.max_iters = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=10)]
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger.interval = iters
    build_runner(cfg).train()
    return os.path.join(str(work_dir), f'iter_{iters}.pth')
