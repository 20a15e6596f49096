# Semantic FPN on ADE20K, 512x512 crops, 40k iterations at batch 32 (8x4), with FastViT-SA12: the
# FastViT paper's segmentation setting (38.0 mIoU for SA12), which follows PoolFormer's recipe
# (sail-sg/poolformer segmentation/configs/sem_fpn/PoolFormer/fpn_poolformer_s12_ade20k_40k.py,
# on mmseg's fpn_r50.py and ade20k.py). Field by field (tests/mm/test_protocols.py holds it):
#   data       resize to 2048x512 with ratio 0.5-2.0, 512x512 crop (cat_max_ratio 0.75), flip,
#              photometric distortion; test: resize to 2048x512 keeping the ratio, then to a
#              multiple of 32 (PoolFormer's AlignResize; mmseg's ResizeToMultiple)
#   head       FPN neck of 256 channels, FPN head of 128 channels with SyncBN, dropout 0.1
#   optimizer  AdamW lr 2e-4, weight decay 1e-4 on every parameter
#   schedule   40k iterations, poly decay (power 0.9, to 0); 8 GPUs x 4 images
#   backbone   no drop path (PoolFormer's dense backbones keep the default 0)
# Departures, on purpose: stage-4 features and output norms as in
# mask-rcnn_fastvit-sa12_fpn_1x_coco.py (timm's FastViT; a channel LayerNorm on each output).
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # the base's ResNet weights; the backbone loads its own through init_cfg
    backbone=dict(
        _delete_=True,
        type='FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa12.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000))
