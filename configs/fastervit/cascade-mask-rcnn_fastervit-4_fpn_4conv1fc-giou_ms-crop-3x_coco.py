_base_ = './cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

model = dict(
    backbone=dict(
        arch='4',
        drop_path_rate=0.4,
        with_cp=True,  # large model at 800x1333: recompute blocks instead of storing activations
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_4_224_1k.pth.tar')),
    neck=dict(in_channels=[196, 392, 784, 1568]))
