_base_ = './upernet_fastervit-0_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='2',
        drop_path_rate=0.3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_2_224_1k.pth.tar')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
