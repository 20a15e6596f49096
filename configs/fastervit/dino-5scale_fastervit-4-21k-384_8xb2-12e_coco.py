# DINO 5-scale, 12 epochs, with the ImageNet-21K FasterViT-4 (384 weights): all four stages feed the
# ChannelMapper, which adds a fifth level.
_base_ = 'mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='4-21k-384',
        # The 21K models were trained with windows as large as their stage maps at 384 (24 and 12)
        # and without carrier tokens; kept as trained. At 800x1333 stage 3 then has 3x4 windows.
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        with_cp=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_4_21k_384_w24.pth.tar')),
    neck=dict(in_channels=[196, 392, 784, 1568]))

optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
