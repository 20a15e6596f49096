_base_ = './mask-rcnn_fastvit-sa12_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='sa24',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa24.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
