_base_ = './upernet_fastervit-0_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='1',
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_1_224_1k.pth.tar')),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))
