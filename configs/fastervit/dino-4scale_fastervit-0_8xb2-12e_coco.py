# DINO 4-scale, 12 epochs on COCO, with FasterViT-0: NVlabs' recipe for FasterViT's DINO detectors
# (NVlabs/FasterViT downstream/object_detection/dino, config/DINO/DINO_4scale_faster_vit_*_224.py
# with coco_transformer.py and models/dino/fastervit.py), on which every dino-4scale config here
# builds. NVlabs published no figure for this model; their one published detector is
# dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py (55.16 box AP).
#
# Field by field against that recipe (tests/mm/test_protocols.py holds the configs to it):
#   backbone   stages 2-4 (strides 8/16/32) into the neck, BatchNorm on each output, drop path 0.1
#   neck       1x1 conv + GroupNorm(32) per level, a stride-2 3x3 conv + GroupNorm for the fourth,
#              all convolutions with a bias (input_proj)
#   detector   900 queries, 300 kept at test time, 6+6 layers, 2048-wide FFNs, no dropout, 4
#              sampling points, sine position encoding with temperature 20, two-stage with box
#              refinement (mmdet's DINO base); one class head and one box head shared by the six
#              decoder layers, the encoder's own (dec_pred_*_embed_share=True,
#              two_stage_*_share=False: the kit's SharedDecoderDINOHead, mmdet's layout)
#   denoising  100 queries (dn_number=100; groups follow the most boxes in the batch), label noise
#              0.5, box noise 0.4 (mmdet's DINO default is 1.0)
#   losses     focal 1.0 (alpha 0.25), L1 5.0, GIoU 2.0; matching costs 2/5/2
#   optimizer  AdamW lr 1e-4, backbone 1e-5 (every parameter under the backbone), weight decay 1e-4
#              on every parameter (param_dict_type 'default': no no-decay rules), gradient
#              clipping at norm 0.1
#   schedule   12 epochs, lr x0.1 after epoch 11; batch 2 per GPU
#   data       DETR multi-scale: short side 480-800 (max 1333), or 400/500/600 -> crop 384-600 ->
#              480-800; random flip; test at short side 800 (max 1333)
# Departures, on purpose:
#   - classes: mmdet's 80 COCO classes (the official head scores 91 COCO category ids).
#   - the backbone as the ImageNet weights were trained: NVlabs' DINO code scales the window
#     position embedding's coordinates by the token count instead of the side, and zero-pads the
#     maps of the convolutional stages to a multiple of 7 (pos_embed_coords='tokens',
#     pad_conv_stages=True; needed only to load their DINO checkpoint).
#   - GPUs: NVlabs do not say how many; IDEA-Research's DINO recipe, on which theirs is built, is
#     8 GPUs x 2 images (this file's name, and auto_scale_lr's base of 16).
#   - gradient checkpointing: the official configs set use_checkpoint=True, which their backbone
#     accepts and ignores; here with_cp is a memory choice for the large models and changes no
#     result.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        out_indices=(1, 2, 3),
        out_norm_cfg=dict(type='BN'),
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_0_224_1k.pth.tar')),
    neck=dict(in_channels=[128, 256, 512], bias=True),
    # 4 sampling points per head and level (enc_n_points, dec_n_points), mmdet's default spelled out
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_points=4))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_points=4))),
    bbox_head=dict(type='SharedDecoderDINOHead'),
    dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=0.4,
                group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)))

# mmdet's DINO optimizer is NVlabs': AdamW 1e-4, weight decay 1e-4, clipping 0.1, and
# custom_keys={'backbone': dict(lr_mult=0.1)}, which matches every parameter whose name contains
# "backbone", as the official param_dict_type='default' does.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
