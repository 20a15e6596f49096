_base_ = './dino-4scale_fastervit-0_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        arch='4',
        with_cp=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_4_224_1k.pth.tar')),
    neck=dict(in_channels=[392, 784, 1568]))
