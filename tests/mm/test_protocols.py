"""Configs held to the protocol behind the published number they are compared with.

Each protocol is data: the field of the resolved config (as mmdet's and mmseg's ``tools/train.py``
resolve it, inheritance included), the protocol's value, and where that value is written. A later
change to a config or to a base it inherits that drifts from the protocol fails here.
"""
import os
import re

import pytest
from mmengine.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# NVlabs/FasterViT, downstream/object_detection/dino: the recipe of the published DINO-4scale
# FasterViT-4-21K-224 (55.16 box AP, 12 epochs).
_DINO = 'NVlabs/FasterViT downstream/object_detection/dino/'
_DINO_CFG = _DINO + 'config/DINO/DINO_4scale_faster_vit_4_21k_224.py'
_DINO_DATA = _DINO + 'config/DINO/coco_transformer.py'
_DINO_BACKBONE = _DINO + 'models/dino/fastervit.py (build_fastervit, FasterViT)'
_DETR_SCALES = [(s, 1333) for s in (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)]

_DINO_RECIPE = [
    ('model.backbone.drop_path_rate', 0.1, _DINO_BACKBONE + ': drop_path_rate=0.1'),
    ('model.backbone.out_norm_cfg.type', 'BN', _DINO_BACKBONE + ': norm_layer=nn.BatchNorm2d'),
    ('model.neck.bias', True, _DINO + 'models/dino/dino.py: input_proj Conv2d (bias)'),
    ('model.neck.norm_cfg', dict(type='GN', num_groups=32), _DINO + 'models/dino/dino.py'),
    ('model.num_queries', 900, _DINO_CFG + ': num_queries = 900'),
    ('model.test_cfg.max_per_img', 300, _DINO_CFG + ': num_select = 300'),
    ('model.encoder.num_layers', 6, _DINO_CFG + ': enc_layers = 6'),
    ('model.decoder.num_layers', 6, _DINO_CFG + ': dec_layers = 6'),
    ('model.encoder.layer_cfg.ffn_cfg.feedforward_channels', 2048,
     _DINO_CFG + ': dim_feedforward = 2048'),
    ('model.encoder.layer_cfg.self_attn_cfg.num_points', 4, _DINO_CFG + ': enc_n_points'),
    ('model.decoder.layer_cfg.cross_attn_cfg.num_points', 4, _DINO_CFG + ': dec_n_points'),
    ('model.decoder.layer_cfg.ffn_cfg.ffn_drop', 0.0, _DINO_CFG + ': dropout = 0.0'),
    ('model.positional_encoding.temperature', 20, _DINO_CFG + ': pe_temperatureH/W = 20'),
    ('model.with_box_refine', True, _DINO_CFG + ': two_stage_type standard, box refinement'),
    ('model.as_two_stage', True, _DINO_CFG + ": two_stage_type = 'standard'"),
    ('model.bbox_head.type', 'SharedDecoderDINOHead',
     _DINO_CFG + ': dec_pred_class_embed_share = dec_pred_bbox_embed_share = True, '
     'two_stage_bbox_embed_share = two_stage_class_embed_share = False'),
    ('model.dn_cfg.label_noise_scale', 0.5, _DINO_CFG + ': dn_label_noise_ratio = 0.5'),
    ('model.dn_cfg.box_noise_scale', 0.4, _DINO_CFG + ': dn_box_noise_scale = 0.4'),
    ('model.dn_cfg.group_cfg.num_dn_queries', 100, _DINO_CFG + ': dn_number = 100'),
    ('model.bbox_head.loss_cls.alpha', 0.25, _DINO_CFG + ': focal_alpha = 0.25'),
    ('model.bbox_head.loss_cls.loss_weight', 1.0, _DINO_CFG + ': cls_loss_coef = 1.0'),
    ('model.bbox_head.loss_bbox.loss_weight', 5.0, _DINO_CFG + ': bbox_loss_coef = 5.0'),
    ('model.bbox_head.loss_iou.loss_weight', 2.0, _DINO_CFG + ': giou_loss_coef = 2.0'),
    ('model.train_cfg.assigner.match_costs.0.weight', 2.0, _DINO_CFG + ': set_cost_class'),
    ('model.train_cfg.assigner.match_costs.1.weight', 5.0, _DINO_CFG + ': set_cost_bbox'),
    ('model.train_cfg.assigner.match_costs.2.weight', 2.0, _DINO_CFG + ': set_cost_giou'),
    ('optim_wrapper.optimizer.type', 'AdamW', _DINO + 'main.py: torch.optim.AdamW'),
    ('optim_wrapper.optimizer.lr', 1e-4, _DINO_CFG + ': lr = 0.0001'),
    ('optim_wrapper.optimizer.weight_decay', 1e-4, _DINO_CFG + ': weight_decay = 0.0001'),
    ('optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult', 0.1,
     _DINO_CFG + ": lr_backbone = 1e-05, param_dict_type = 'default'"),
    ('optim_wrapper.constructor', None,
     _DINO_CFG + ": param_dict_type = 'default' (weight decay on every parameter)"),
    ('optim_wrapper.clip_grad.max_norm', 0.1, _DINO_CFG + ': clip_max_norm = 0.1'),
    ('train_cfg.max_epochs', 12, _DINO_CFG + ': epochs = 12'),
    ('param_scheduler.0.milestones', [11], _DINO_CFG + ': lr_drop = 11'),
    ('param_scheduler.0.gamma', 0.1, _DINO + 'main.py: StepLR(lr_drop) (gamma 0.1)'),
    ('train_dataloader.batch_size', 2, _DINO_CFG + ': batch_size = 2'),
    ('train_pipeline.2.type', 'RandomFlip', _DINO + 'datasets/coco.py: RandomHorizontalFlip'),
    ('train_pipeline.3.transforms.0.0.scales', _DETR_SCALES,
     _DINO_DATA + ': data_aug_scales, data_aug_max_size = 1333'),
    ('train_pipeline.3.transforms.1.0.scales', [(400, 4200), (500, 4200), (600, 4200)],
     _DINO_DATA + ': data_aug_scales2_resize (no max size)'),
    ('train_pipeline.3.transforms.1.1.crop_size', (384, 600),
     _DINO_DATA + ': data_aug_scales2_crop = [384, 600]'),
    ('train_pipeline.3.transforms.1.2.scales', _DETR_SCALES, _DINO_DATA + ': data_aug_scales'),
    ('test_pipeline.1.scale', (1333, 800), _DINO + 'datasets/coco.py: RandomResize([800], '
     'max_size=1333) for val'),
    ('model.bbox_head.num_classes', 80, 'departure: 80 COCO classes (the official head scores '
     '91 category ids; the converter keeps the 80 rows that are classes)'),
]


def _dino(arch, out_indices=(1, 2, 3), levels=4, coords=None):
    name = f'faster_vit_{arch.replace("-", "_")}' + ('' if '21k' in arch else '_224')
    config = _DINO + f'config/DINO/DINO_{levels}scale_{name}' + ('' if levels == 4 or
                                                                   '21k' not in arch else '_12ep')
    fields = _DINO_RECIPE + [
        ('model.backbone.arch', arch, f'{config}.py: backbone'),
        ('model.backbone.out_indices', out_indices, f'{config}.py: return_interm_indices'),
        ('model.neck.num_outs', levels, f'{config}.py: num_feature_levels = {levels}'),
        ('model.backbone.pos_embed_coords', coords,
         _DINO_BACKBONE + ': PosEmbMLPSwinv1D' if coords else
         'departure: the coordinates the ImageNet weights were trained with'),
        ('model.backbone.pad_conv_stages', True if coords else None,
         _DINO_BACKBONE + ': FasterViTLayer.forward pads every stage' if coords else
         'departure: convolutional stages unpadded, as the ImageNet weights were trained'),
    ]
    if levels != 4:
        fields += [('model.num_feature_levels', levels, f'{config}.py: num_feature_levels'),
                   ('model.encoder.layer_cfg.self_attn_cfg.num_levels', levels, f'{config}.py'),
                   ('model.decoder.layer_cfg.cross_attn_cfg.num_levels', levels, f'{config}.py')]
    return fields


# sail-sg/poolformer, which the FastViT paper follows for Mask R-CNN 1x and Semantic FPN 40k.
_PF = 'sail-sg/poolformer '
_PF_DET = _PF + 'detection/configs/mask_rcnn_poolformer_s12_fpn_1x_coco.py'
_PF_DET_BASE = _PF + 'detection/configs/_base_/'
_PF_SEG = _PF + 'segmentation/configs/sem_fpn/PoolFormer/fpn_poolformer_s12_ade20k_40k.py'
_PF_SEG_BASE = _PF + 'segmentation/configs/_base_/'
_PF_BACKBONE = _PF + 'models/poolformer.py: PoolFormer(drop_path_rate=0.)'

_POOLFORMER_MASK_RCNN = [
    ('model.backbone.drop_path_rate', 0.0, _PF_BACKBONE),
    ('model.neck.out_channels', 256, _PF_DET + ': FPN out_channels=256'),
    ('model.neck.num_outs', 5, _PF_DET + ': num_outs=5'),
    ('optim_wrapper.optimizer', dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
     _PF_DET + ": optimizer = dict(type='AdamW', lr=0.0002, weight_decay=0.0001)"),
    ('optim_wrapper.paramwise_cfg', None, _PF_DET + ': no paramwise rules'),
    ('optim_wrapper.constructor', None, _PF_DET + ': no paramwise rules'),
    ('optim_wrapper.clip_grad', None, _PF_DET + ': optimizer_config = dict(grad_clip=None)'),
    ('param_scheduler.0', dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
                               end=500), _PF_DET_BASE + 'schedules/schedule_1x.py: warmup'),
    ('param_scheduler.1.milestones', [8, 11], _PF_DET_BASE + 'schedules/schedule_1x.py: step'),
    ('train_cfg.max_epochs', 12, _PF_DET_BASE + 'schedules/schedule_1x.py: max_epochs=12'),
    ('train_dataloader.batch_size', 2, _PF_DET_BASE + 'datasets/coco_instance.py: '
     'samples_per_gpu=2 (8 GPUs: detection/README.md)'),
    ('auto_scale_lr.base_batch_size', 16, _PF + 'detection/README.md: dist_train.sh ... 8'),
    ('train_pipeline.2', dict(type='Resize', scale=(1333, 800), keep_ratio=True),
     _PF_DET_BASE + 'datasets/coco_instance.py: img_scale=(1333, 800)'),
    ('train_pipeline.3.prob', 0.5, _PF_DET_BASE + 'datasets/coco_instance.py: flip_ratio=0.5'),
    ('model.data_preprocessor.pad_size_divisor', 32,
     _PF_DET_BASE + 'datasets/coco_instance.py: Pad size_divisor=32'),
    ('test_pipeline.1', dict(type='Resize', scale=(1333, 800), keep_ratio=True),
     _PF_DET_BASE + 'datasets/coco_instance.py: test img_scale=(1333, 800)'),
    ('val_evaluator.metric', ['bbox', 'segm'],
     _PF_DET_BASE + "datasets/coco_instance.py: evaluation metric=['bbox', 'segm']"),
]

_POOLFORMER_SEM_FPN = [
    ('model.backbone.drop_path_rate', 0.0, _PF_BACKBONE),
    ('model.neck.out_channels', 256, _PF_SEG_BASE + 'models/fpn_r50.py'),
    ('model.decode_head.channels', 128, _PF_SEG_BASE + 'models/fpn_r50.py: channels=128'),
    ('model.decode_head.dropout_ratio', 0.1, _PF_SEG_BASE + 'models/fpn_r50.py'),
    ('model.decode_head.norm_cfg.type', 'SyncBN', _PF_SEG_BASE + 'models/fpn_r50.py'),
    ('optim_wrapper.optimizer', dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
     _PF_SEG + ': lr=0.0001*gpu_multiples (2), weight_decay=0.0001'),
    ('optim_wrapper.paramwise_cfg', None, _PF_SEG + ': no paramwise rules'),
    ('optim_wrapper.constructor', None, _PF_SEG + ': no paramwise rules'),
    ('param_scheduler', [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000,
                              by_epoch=False)], _PF_SEG + ": policy='poly', power=0.9, min_lr=0.0"),
    ('train_cfg.max_iters', 40000, _PF_SEG + ': max_iters=80000//gpu_multiples'),
    ('train_dataloader.batch_size', 4, _PF_SEG_BASE + 'datasets/ade20k.py: samples_per_gpu=4 '
     '(8 GPUs: gpu_multiples = 2)'),
    ('train_pipeline.2', dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
                              keep_ratio=True),
     _PF_SEG_BASE + 'datasets/ade20k.py: Resize img_scale=(2048, 512), ratio_range=(0.5, 2.0)'),
    ('train_pipeline.3', dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
     _PF_SEG_BASE + 'datasets/ade20k.py: RandomCrop cat_max_ratio=0.75'),
    ('train_pipeline.4.prob', 0.5, _PF_SEG_BASE + 'datasets/ade20k.py: RandomFlip prob=0.5'),
    ('train_pipeline.5.type', 'PhotoMetricDistortion', _PF_SEG_BASE + 'datasets/ade20k.py'),
    ('test_dataloader.dataset.pipeline.1', dict(type='Resize', scale=(2048, 512), keep_ratio=True),
     _PF_SEG_BASE + 'datasets/ade20k.py: test img_scale=(2048, 512)'),
    ('test_dataloader.dataset.pipeline.2', dict(type='ResizeToMultiple', size_divisor=32),
     _PF_SEG_BASE + 'datasets/ade20k.py: AlignResize(keep_ratio=True, size_divisor=32)'),
    ('val_evaluator.iou_metrics', ['mIoU'], _PF_SEG + ": metric='mIoU'"),
]

# Swin's Cascade Mask R-CNN 3x recipe, against whose Swin-T the FasterViT paper compares, as NVlabs
# reuse it in mmdet 3.x form for MambaVision.
_SWIN_DET = ('SwinTransformer/Swin-Transformer-Object-Detection configs/swin/'
             'cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py')
_SWIN_DET_BASE = 'SwinTransformer/Swin-Transformer-Object-Detection configs/_base_/'
_MAMBA_DET = ('NVlabs/MambaVision object_detection/configs/mamba_vision/'
              'cascade_mask_rcnn_mamba_vision_tiny_3x_coco.py')


def _cascade_head(stage, stds):
    return [
        (f'model.roi_head.bbox_head.{stage}.type', 'ConvFCBBoxHead', _SWIN_DET),
        (f'model.roi_head.bbox_head.{stage}.num_shared_convs', 4, _SWIN_DET + ': 4conv'),
        (f'model.roi_head.bbox_head.{stage}.num_shared_fcs', 1, _SWIN_DET + ': 1fc'),
        (f'model.roi_head.bbox_head.{stage}.fc_out_channels', 1024, _SWIN_DET),
        (f'model.roi_head.bbox_head.{stage}.norm_cfg', dict(type='SyncBN', requires_grad=True),
         _SWIN_DET),
        (f'model.roi_head.bbox_head.{stage}.reg_decoded_bbox', True, _SWIN_DET),
        (f'model.roi_head.bbox_head.{stage}.loss_bbox', dict(type='GIoULoss', loss_weight=10.0),
         _SWIN_DET),
        (f'model.roi_head.bbox_head.{stage}.bbox_coder.target_stds', stds, _SWIN_DET),
    ]


_SWIN_SCALES = [(s, 1333) for s in (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)]
_SWIN_CASCADE_3X = (
    _cascade_head(0, [0.1, 0.1, 0.2, 0.2]) + _cascade_head(1, [0.05, 0.05, 0.1, 0.1]) +
    _cascade_head(2, [0.033, 0.033, 0.067, 0.067]) + [
        ('train_pipeline.2', dict(type='RandomFlip', prob=0.5), _SWIN_DET + ': flip_ratio=0.5'),
        ('train_pipeline.3.transforms.0.0.scales', _SWIN_SCALES, _SWIN_DET + ': 480-800'),
        ('train_pipeline.3.transforms.1.0.scales', [(400, 1333), (500, 1333), (600, 1333)],
         _SWIN_DET),
        ('train_pipeline.3.transforms.1.1', dict(type='RandomCrop', crop_type='absolute_range',
                                                 crop_size=(384, 600), allow_negative_crop=True),
         _SWIN_DET),
        ('train_pipeline.3.transforms.1.2.scales', _SWIN_SCALES, _SWIN_DET + ': override=True'),
        ('test_pipeline.1', dict(type='Resize', scale=(1333, 800), keep_ratio=True),
         _SWIN_DET_BASE + 'datasets/coco_instance.py'),
        ('optim_wrapper.optimizer', dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                         weight_decay=0.05), _SWIN_DET),
        ('optim_wrapper.constructor', 'NoDecayOptimWrapperConstructor',
         _SWIN_DET + ': decay_mult=0 for absolute_pos_embed, relative_position_bias_table, norm'),
        ('optim_wrapper.clip_grad', None, _SWIN_DET + ': grad_clip=None'),
        ('param_scheduler.0', dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
                                   end=500), _SWIN_DET_BASE + 'schedules/schedule_1x.py: warmup'),
        ('param_scheduler.1.milestones', [27, 33], _SWIN_DET + ': lr_config step=[27, 33]'),
        ('train_cfg.max_epochs', 36, _SWIN_DET + ': max_epochs=36'),
        ('train_dataloader.batch_size', 2, _SWIN_DET_BASE + 'datasets/coco_instance.py: '
         'samples_per_gpu=2; 8 GPUs (' + _MAMBA_DET + ')'),
        ('auto_scale_lr.base_batch_size', 16, _MAMBA_DET + ': 8 GPUs x 2'),
        ('val_evaluator.metric', ['bbox', 'segm'], _MAMBA_DET + ": metric=['bbox', 'segm']"),
    ])

# Swin's UperNet recipe (the FasterViT paper compares with Swin-T's UperNet on ADE20K).
_SWIN_SEG = ('SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/'
             'upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py')
_SWIN_SEG_BASE = 'SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/_base_/'
_SWIN_UPERNET = [
    ('model.decode_head.type', 'UPerHead', _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.decode_head.channels', 512, _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.decode_head.pool_scales', (1, 2, 3, 6), _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.decode_head.norm_cfg.type', 'SyncBN', _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.auxiliary_head.in_index', 2, _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.auxiliary_head.channels', 256, _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('model.auxiliary_head.loss_decode.loss_weight', 0.4,
     _SWIN_SEG_BASE + 'models/upernet_swin.py'),
    ('optim_wrapper.optimizer', dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                     weight_decay=0.01), _SWIN_SEG + ': lr=0.00006'),
    ('optim_wrapper.constructor', 'NoDecayOptimWrapperConstructor',
     _SWIN_SEG + ': decay_mult=0 for absolute_pos_embed, relative_position_bias_table, norm'),
    ('param_scheduler', [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
                              end=1500),
                         dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
                              by_epoch=False)],
     _SWIN_SEG + ": poly, warmup_iters=1500, warmup_ratio=1e-6, power=1.0, min_lr=0.0"),
    ('train_cfg.max_iters', 160000, _SWIN_SEG_BASE + 'schedules/schedule_160k.py'),
    ('train_dataloader.batch_size', 2, _SWIN_SEG + ': 8 GPUs with 2 images per GPU'),
    ('train_pipeline.2', dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
                              keep_ratio=True), _SWIN_SEG_BASE + 'datasets/ade20k.py'),
    ('train_pipeline.3', dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
     _SWIN_SEG_BASE + 'datasets/ade20k.py'),
    ('train_pipeline.5.type', 'PhotoMetricDistortion', _SWIN_SEG_BASE + 'datasets/ade20k.py'),
    ('test_pipeline.1', dict(type='Resize', scale=(2048, 512), keep_ratio=True),
     _SWIN_SEG_BASE + 'datasets/ade20k.py: test img_scale=(2048, 512)'),
]

# mmdet's Swin-T Mask R-CNN 1x: the recipe of the FasterViT Mask R-CNN configs, which have no
# published figure.
_MMDET_SWIN = 'open-mmlab/mmdetection configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
_MMDET_SWIN_MASK_RCNN = [
    ('optim_wrapper.optimizer', dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                     weight_decay=0.05), _MMDET_SWIN),
    ('optim_wrapper.constructor', 'NoDecayOptimWrapperConstructor',
     _MMDET_SWIN + ': decay_mult=0 for absolute_pos_embed, relative_position_bias_table, norm'),
    ('param_scheduler.0', dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
                               end=1000), _MMDET_SWIN),
    ('param_scheduler.1.milestones', [8, 11], _MMDET_SWIN),
    ('train_cfg.max_epochs', 12, _MMDET_SWIN),
    ('train_dataloader.batch_size', 2, _MMDET_SWIN + ' (8 GPUs x 2)'),
    ('train_pipeline.2', dict(type='Resize', scale=(1333, 800), keep_ratio=True), _MMDET_SWIN),
    ('val_evaluator.metric', ['bbox', 'segm'], _MMDET_SWIN),
]

PROTOCOLS = {
    **{f'fastervit/upernet_fastervit-{a}_8xb2-160k_ade20k-512x512.py': _SWIN_UPERNET
       for a in '01234'},
    **{f'fastvit/upernet_fastvit-{a}_8xb2-160k_ade20k-512x512.py': _SWIN_UPERNET
       for a in ('sa12', 'sa24', 'sa36', 'ma36')},
    **{f'fastervit/mask-rcnn_fastervit-{a}_fpn_1x_coco.py': _MMDET_SWIN_MASK_RCNN for a in '012'},
    **{f'fastervit/cascade-mask-rcnn_fastervit-{a}_fpn_4conv1fc-giou_ms-crop-3x_coco.py':
       _SWIN_CASCADE_3X for a in '234'},
    **{f'fastvit/mask-rcnn_fastvit-{a}_fpn_1x_coco.py': _POOLFORMER_MASK_RCNN
       for a in ('sa12', 'sa24', 'sa36', 'ma36')},
    **{f'fastvit/fpn_fastvit-{a}_8xb4-40k_ade20k-512x512.py': _POOLFORMER_SEM_FPN
       for a in ('sa12', 'sa24', 'sa36', 'ma36')},
    **{f'fastervit/dino-4scale_fastervit-{a}_8xb2-12e_coco.py': _dino(a) for a in '01234'},
    # the published detector: exactly as NVlabs trained it
    'fastervit/dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py': _dino('4-21k-224',
                                                                        coords='tokens'),
    'fastervit/dino-5scale_fastervit-4-21k-384_8xb2-12e_coco.py': _dino(
        '4-21k-384', out_indices=(0, 1, 2, 3), levels=5),
}

_MISSING = object()


def resolve(cfg, path):
    value = cfg
    for part in path.split('.'):
        if isinstance(value, (list, tuple)):
            value = value[int(part)]
        elif part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def normalise(value):
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):  # '_scope_' marks a value inherited from mmdet::/mmseg::
        return {k: normalise(v) for k, v in value.items() if k != '_scope_'}
    return value


CASES = [(config, path, value, source) for config, fields in PROTOCOLS.items()
         for path, value, source in fields]


@pytest.fixture(scope='module')
def configs():
    return {name: Config.fromfile(os.path.join(ROOT, 'configs', name)) for name in PROTOCOLS}


def test_every_shipped_config_has_a_protocol():
    import glob
    shipped = {os.path.relpath(p, os.path.join(ROOT, 'configs'))
               for folder in ('fastervit', 'fastvit')
               for p in glob.glob(os.path.join(ROOT, 'configs', folder, '*.py'))}
    assert shipped == set(PROTOCOLS)


@pytest.mark.parametrize('config,path,expected,source', CASES,
                         ids=[f'{c.split("/")[1].split("_8x")[0]}:{p}' for c, p, _, _ in CASES])
def test_config_follows_its_protocol(configs, config, path, expected, source):
    found = resolve(configs[config], path)
    if expected is None:
        assert found in (_MISSING, None), f'{config}: {path} is {found!r}; protocol: none ({source})'
    else:
        assert found is not _MISSING, f'{config}: {path} is not set; protocol: {expected!r} ({source})'
        assert normalise(found) == normalise(expected), \
            f'{config}: {path} is {found!r}; protocol: {expected!r} ({source})'


def test_the_readmes_model_zoo_is_the_metafiles():
    """README.md's table, and each configs folder's README's table of its own configs, is what
    tools/analysis_tools/model_zoo.py makes of the metafiles, which list every config, and each
    figure names its source."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'model_zoo', os.path.join(ROOT, 'tools', 'analysis_tools', 'model_zoo.py'))
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    for path, folders, prefix in zoo.readmes():
        with open(path) as f:
            readme = f.read()
        assert zoo.replace_in(readme, folders, prefix) == readme, \
            f'{path}: run tools/analysis_tools/model_zoo.py --write'
        for target in re.findall(r'\]\(([^)#]+\.py)\)', readme):  # every config link resolves
            assert os.path.isfile(os.path.join(os.path.dirname(path), target)), (path, target)
    listed = {m['Config'][len('configs/'):] for m in zoo.models()}
    assert listed == set(PROTOCOLS)
    for model in zoo.models():
        assert model['Metadata']['Trained By This Kit'] is False
        for result in model.get('Results', []):
            assert result['Source'] and result['Checked']


# --------------------------------------------------------------- under the frameworks' own tools
FRAMEWORK_FAMILIES = [
    # (config, backbone override: a smaller variant stands in for the large ones)
    ('fastervit/dino-4scale_fastervit-0_8xb2-12e_coco.py', ''),
    ('fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py', ''),
    ('fastervit/cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py',
     "arch='0'), neck=dict(in_channels=[64, 128, 256, 512]"),
    ('fastvit/mask-rcnn_fastvit-sa12_fpn_1x_coco.py', ''),
    ('fastervit/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py', ''),
    ('fastvit/fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py', ''),
]


#: the families whose run starts the framework's train.py in a new interpreter, one per framework:
#: there nothing of the kit is imported but what the config's ``custom_imports`` names
#: (test_configs.py holds every config to the same ``custom_imports``); the others run the same
#: script in this process, which saves the interpreter's imports
NEW_INTERPRETER = ('fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py',
                   'fastvit/fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py')


@pytest.mark.training
@pytest.mark.parametrize('config,override', [
    pytest.param(c, o, marks=[pytest.mark.subprocess] if c in NEW_INTERPRETER else [],
                 id=c.split('/')[1].split('_8x')[0].split('_fpn')[0])
    for c, o in FRAMEWORK_FAMILIES])
def test_family_trains_a_step_under_the_frameworks_own_train_py(tiny_data, tmp_path, config,
                                                               override, script_command):
    """mmdet's / mmseg's own ``tools/train.py`` (as installed with them) runs each family's shipped
    recipe, its training pipeline included, for one iteration on small generated data, through a
    config that inherits the shipped one as a user's would."""
    import importlib
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', config))
    framework = cfg.default_scope
    tool = os.path.join(os.path.dirname(importlib.import_module(framework).__file__), '.mim',
                        'tools', 'train.py')
    batch = 1 if framework == 'mmdet' else 2  # UperNet's pooled 1x1 branch needs two to normalise
    if framework == 'mmdet':
        data = (f"data_root='{tiny_data}/coco/', ann_file='annotations/instances_train.json', "
                "data_prefix=dict(img='train/'), "
                "metainfo=dict(classes=('rectangle', 'ellipse', 'triangle'))")
    else:
        data = f"data_root='{tiny_data}/ade/'"
    user_config = tmp_path / 'user_config.py'
    user_config.write_text(
        f"_base_ = '{os.path.join(ROOT, 'configs', config)}'\n"
        f"model = dict(backbone=dict(init_cfg=None{', ' + override if override else ''}))\n"
        f"train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,\n"
        f"                        dataset=dict({data}))\n"
        "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1, "
        "val_interval=1000)\n"
        "param_scheduler = []\n"
        "log_processor = dict(by_epoch=False)\n"
        "val_cfg = val_dataloader = val_evaluator = None\n"
        "test_cfg = test_dataloader = test_evaluator = None\n"
        "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, "
        "interval=1000))\n")
    result = script_command(tool, user_config, '--work-dir', tmp_path / 'work',
                            new_interpreter=config in NEW_INTERPRETER)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    step = [line for line in output.splitlines() if 'Iter(train) [1/1]' in line]
    assert step and ' loss: ' in step[0] and 'nan' not in step[0], output[-3000:]
