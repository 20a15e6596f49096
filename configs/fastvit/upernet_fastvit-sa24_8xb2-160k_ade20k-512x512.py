_base_ = './upernet_fastvit-sa12_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='sa24',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa24.apple_in1k')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
