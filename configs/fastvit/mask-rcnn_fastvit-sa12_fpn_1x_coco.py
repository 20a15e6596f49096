# Mask R-CNN 1x on COCO with FastViT-SA12: the FastViT paper's detection setting (38.9 box / 35.9
# mask AP for SA12), which follows PoolFormer's Mask R-CNN recipe (sail-sg/poolformer
# detection/configs/mask_rcnn_poolformer_s12_fpn_1x_coco.py, on mmdet's mask_rcnn_r50_fpn with
# coco_instance.py and schedule_1x.py). Field by field (tests/mm/test_protocols.py holds it):
#   data       short side 800, long side up to 1333, random flip, padding to 32; test at 1333x800
#   optimizer  AdamW lr 2e-4, weight decay 1e-4 on every parameter, no gradient clipping
#   schedule   12 epochs, linear warm-up over 500 iterations from 0.001, lr x0.1 after epochs 8
#              and 11; 8 GPUs x 2 images
#   backbone   no drop path (PoolFormer's dense backbones keep the default 0)
#   evaluation box and mask AP
# Departures, on purpose:
#   - stage-4 features: timm's FastViT, whose stage 4 includes the attention blocks; Apple's
#     feature taps (apple/ml-fastvit PR #4) stop before them. The kit builds on timm's model.
#   - output norms: a channel LayerNorm on each output (the kit's default); PoolFormer's backbone
#     puts a GroupNorm(1) on its own outputs, and the FastViT paper does not say what FastViT used.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        # Train unfused; for inference set deploy=True and load a checkpoint made by
        # tools/deployment/reparameterize.py.
        deploy=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa12.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
