# DINO 4-scale, 12 epochs on COCO, on mmdet's recipe (AdamW 1e-4, weight decay 1e-4, backbone
# learning rate x0.1, gradient clipping 0.1). Stages 2-4 (strides 8/16/32) feed the ChannelMapper;
# DETR-style random resizing runs on one backbone instance.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_0_224_1k.pth.tar')),
    neck=dict(in_channels=[128, 256, 512]))

# The backbone's lr_mult stays; norms, position terms and layer scales also lose weight decay.
optim_wrapper = dict(constructor='NoDecayOptimWrapperConstructor')
