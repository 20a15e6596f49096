# DINO 5-scale, 12 epochs, with the ImageNet-21K FasterViT-4 (384 weights): NVlabs' recipe
# (NVlabs/FasterViT downstream/object_detection/dino, config/DINO/
# DINO_5scale_faster_vit_4_21k_384_12ep.py): the FasterViT-0 recipe of the base config with all four
# stages into the neck (return_interm_indices [0, 1, 2, 3]), which adds a fifth level
# (num_feature_levels 5). NVlabs published no figure for it. The 21K models were trained with
# windows as large as their stage maps at 384 (24 and 12) and without carrier tokens; kept as
# trained. At 800x1333 stage 3 then has 3x4 windows.
_base_ = './dino-4scale_fastervit-0_8xb2-12e_coco.py'

num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(
        arch='4-21k-384',
        out_indices=(0, 1, 2, 3),
        with_cp=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_4_21k_384_w24.pth.tar')),
    neck=dict(in_channels=[196, 392, 784, 1568], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
