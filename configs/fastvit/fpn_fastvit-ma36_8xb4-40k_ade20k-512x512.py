_base_ = './fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='ma36',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_ma36.apple_in1k')),
    neck=dict(in_channels=[76, 152, 304, 608]))
