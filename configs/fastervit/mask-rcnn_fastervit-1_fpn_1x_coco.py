_base_ = './mask-rcnn_fastervit-0_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='1',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_1_224_1k.pth.tar')),
    neck=dict(in_channels=[80, 160, 320, 640]))
