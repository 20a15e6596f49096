_base_ = './mask-rcnn_fastvit-sa12_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='ma36',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_ma36.apple_in1k')),
    neck=dict(in_channels=[76, 152, 304, 608]))
