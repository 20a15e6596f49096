# DINO-4scale with FasterViT-4-21K-224, as NVlabs trained the one FasterViT detector they published
# (55.16 box AP on COCO val2017, 12 epochs; NVlabs/FasterViT downstream/object_detection/dino,
# config/DINO/DINO_4scale_faster_vit_4_21k_224.py, which differs from the FasterViT-0 recipe of the
# base config only in its backbone). Their checkpoint, DINO_4scale_faster_vit_4_21k_224_ms_coco.pth,
# converts into this config with tools/model_converters/dino2mm.py (configs/fastervit/README.md).
#
# The backbone as NVlabs trained it: preset 4-21k-224 (windows 7/7/14/7, no carrier tokens), and
# two behaviours of their DINO code that the weights were trained with: the window position
# embedding on coordinates scaled by the token count (pos_embed_coords='tokens'), and the maps of
# the convolutional stages zero-padded to a multiple of 7 before their blocks (pad_conv_stages).
# Departures of the base config that remain: 80 classes, and with_cp (memory only).
_base_ = './dino-4scale_fastervit-0_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        arch='4-21k-224',
        pos_embed_coords='tokens',
        pad_conv_stages=True,
        with_cp=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_4_21k_224_w14.pth.tar')),
    neck=dict(in_channels=[392, 784, 1568]))
