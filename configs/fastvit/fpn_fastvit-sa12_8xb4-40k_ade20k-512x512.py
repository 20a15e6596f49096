# Semantic FPN on ADE20K, 512x512 crops, 40k iterations at batch 32 (8x4), with FastViT-SA12: the
# FastViT paper's segmentation setting, which follows PoolFormer's recipe (AdamW 2e-4, weight decay
# 1e-4, poly decay with power 0.9).
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # the base's ResNet weights; the backbone loads its own through init_cfg
    backbone=dict(
        _delete_=True,
        type='FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa12.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='NoDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000))
