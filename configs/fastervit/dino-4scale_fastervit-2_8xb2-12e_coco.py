_base_ = './dino-4scale_fastervit-0_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        arch='2',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_2_224_1k.pth.tar')),
    neck=dict(in_channels=[192, 384, 768]))
