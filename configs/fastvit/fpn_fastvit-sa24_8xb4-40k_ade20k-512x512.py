_base_ = './fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='sa24',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa24.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
