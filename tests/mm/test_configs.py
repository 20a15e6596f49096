"""Every config loads and builds; each algorithm family with each backbone takes a real training
step (loss, backward, optimizer step) and predicts, on small generated inputs."""
import copy
import glob
import os

import pytest
import torch
from mmengine.config import Config

from fastervit_dense.mm.batches import det_batch, seg_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'fastervit', '*.py')) +
                 glob.glob(os.path.join(ROOT, 'configs', 'fastvit', '*.py')))


def load(name_or_path):
    path = name_or_path if os.path.isabs(name_or_path) else os.path.join(ROOT, 'configs',
                                                                          name_or_path)
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no ImageNet files in tests
    return cfg


def registry(cfg):
    import fastervit_dense.mm  # noqa: F401
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return MODELS


def build(cfg, init=False):
    """The model as mmengine's Runner prepares it on one CPU process."""
    from mmengine.model import revert_sync_batchnorm
    model = registry(cfg).build(cfg.model)
    if init:
        model.init_weights()
    return revert_sync_batchnorm(model)


def test_config_names_follow_openmmlab_naming():
    names = [os.path.basename(p) for p in CONFIGS]
    assert len(names) == 30
    for name in names:
        algorithm, backbone = name.split('_')[:2]
        assert algorithm in ('dino-4scale', 'dino-5scale', 'mask-rcnn', 'cascade-mask-rcnn',
                             'upernet', 'fpn'), name
        assert backbone.startswith(('fastervit-', 'fastvit-')), name


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.basename(p)[:-3] for p in CONFIGS])
def test_every_config_builds_its_model(path):
    cfg = load(path)
    assert cfg.custom_imports == dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)
    assert cfg.model.backbone.type in ('FasterViT', 'FastViT')
    # the optimizer's constructor follows each protocol: tests/mm/test_protocols.py
    model = build(cfg)
    backbone = model.backbone
    channels = [backbone.num_features[i] for i in backbone.out_indices]
    neck_in = cfg.model.get('neck', {}).get('in_channels')
    head_in = cfg.model.get('decode_head', {}).get('in_channels')
    assert channels == list(neck_in if neck_in is not None else head_in)


def test_every_config_names_its_published_weights_by_url_or_hub_id():
    """Each config's ImageNet weights are its preset's published file (by URL for FasterViT, by
    timm's hub id for FastViT), exactly what ``published_weights(arch)`` gives."""
    from fastervit_dense import FasterViT, FastViT
    classes = dict(FasterViT=FasterViT, FastViT=FastViT)
    for path in CONFIGS:
        backbone = Config.fromfile(path).model.backbone
        checkpoint = backbone.init_cfg.checkpoint
        assert checkpoint.startswith(('https://', 'hf-hub:')), (path, checkpoint)
        assert checkpoint == classes[backbone.type].published_weights(backbone.arch), path


# ------------------------------------------------------------------------------- training steps
FAMILIES = [
    # (config, override, input shapes): a smaller variant stands in for the large ones.
    ('fastervit/dino-4scale_fastervit-0_8xb2-12e_coco.py', {}, [(3, 256, 320)]),
    ('fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py', {}, [(3, 160, 224), (3, 192, 160)]),
    ('fastervit/cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py',
     dict(backbone=dict(arch='0'), neck=dict(in_channels=[64, 128, 256, 512])), [(3, 160, 224)]),
    ('fastvit/mask-rcnn_fastvit-sa12_fpn_1x_coco.py', {}, [(3, 160, 224), (3, 192, 160)]),
    ('fastervit/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py', {}, [(3, 128, 160)] * 2),
    ('fastvit/upernet_fastvit-sa12_8xb2-160k_ade20k-512x512.py', {}, [(3, 128, 160)] * 2),
    ('fastvit/fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py', {}, [(3, 128, 160)] * 2),
]


@pytest.mark.training
@pytest.mark.parametrize('config,override,shapes', FAMILIES,
                         ids=[f[0].split('/')[1].split('_8x')[0].split('_fpn')[0] for f in FAMILIES])
def test_family_trains_one_step_and_predicts(config, override, shapes):
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    cfg = load(config)
    if override:
        cfg.merge_from_dict({'model': override})
    if cfg.default_scope == 'mmdet':
        cfg.model.data_preprocessor.pad_size_divisor = 32
    else:  # pad to a multiple of 32, not to the 512x512 training crop
        cfg.model.data_preprocessor.update(size=None, size_divisor=32)
    model = build(cfg, init=True)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if cfg.default_scope == 'mmdet':
        batch = det_batch(shapes, with_mask='mask' in config, num_classes=80)
    else:
        batch = seg_batch(shapes, num_classes=150)
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    losses = model.train_step(copy.deepcopy(batch), optim_wrapper)
    assert losses and all(torch.isfinite(v).all() for v in losses.values())
    moved = [n for n, p in model.backbone.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > 0.8 * len(before)

    model.eval()
    with torch.no_grad():
        results = model.val_step(copy.deepcopy(batch))
    assert len(results) == len(shapes)
    if cfg.default_scope == 'mmdet':
        assert 'bboxes' in results[0].pred_instances
        if 'mask' in config:
            assert 'masks' in results[0].pred_instances
    else:
        h, w = shapes[0][1:]
        assert tuple(results[0].pred_sem_seg.data.shape[-2:]) == (h, w)


def test_no_decay_survives_custom_keys_in_dino():
    """With DINO's custom_keys={'backbone': lr_mult 0.1}, the backbone's norms, position MLPs and
    layer scales still get no weight decay, and keep the 0.1 learning rate (NVlabs' DINO recipe
    has no no-decay rules; a user adds the constructor to a DINO config)."""
    from mmengine.optim import build_optim_wrapper
    cfg = load('fastervit/dino-4scale_fastervit-0_8xb2-12e_coco.py')
    assert 'constructor' not in cfg.optim_wrapper
    cfg.optim_wrapper.constructor = 'NoDecayOptimWrapperConstructor'
    model = build(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g for g in optim_wrapper.optimizer.param_groups}
    base_lr, base_wd = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay
    for name in ('backbone.levels.2.blocks.0.norm1.weight',
                 'backbone.levels.2.blocks.0.attn.pos_emb_funct.cpb_mlp.0.weight',
                 'backbone.levels.2.blocks.0.hat_pos_embed.cpb_mlp.2.weight',
                 'backbone.levels.2.global_tokenizer.pos_embed.weight',
                 'backbone.patch_embed.conv_down.1.weight'):
        assert groups[name]['weight_decay'] == 0, name
        assert groups[name]['lr'] == pytest.approx(0.1 * base_lr), name
    qkv = groups['backbone.levels.2.blocks.0.attn.qkv.weight']
    assert qkv['weight_decay'] == base_wd and qkv['lr'] == pytest.approx(0.1 * base_lr)
    head = next(g for n, g in groups.items() if n.startswith('bbox_head') and n.endswith('weight'))
    assert head['lr'] == pytest.approx(base_lr)


def test_metafiles_list_every_config_with_its_pretrained_weights():
    import yaml
    listed = {}
    for folder in ('fastervit', 'fastvit'):
        meta = yaml.safe_load(open(os.path.join(ROOT, 'configs', folder, 'metafile.yml')))
        for model in meta['Models']:
            listed[os.path.join(ROOT, model['Config'])] = model['Metadata']['Pretrained Weights']
    assert sorted(listed) == CONFIGS
    for path, weights in listed.items():
        assert Config.fromfile(path).model.backbone.init_cfg.checkpoint == weights, path
