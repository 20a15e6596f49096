# Cascade Mask R-CNN, multi-scale 3x on COCO (the FasterViT paper's detection setting), with mmdet's
# 3x multi-scale schedule and Swin's AdamW recipe (1e-4, weight decay 0.05).
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='2',
        # ImageNet windows with carrier tokens in stage 3 (see mask-rcnn_fastervit-0); the
        # multi-scale training sizes (640-800 short side) all run on the same instance.
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_2_224_1k.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='NoDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
