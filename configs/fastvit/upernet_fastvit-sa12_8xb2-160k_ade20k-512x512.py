# UperNet on ADE20K, 512x512 crops, 160k iterations, with FastViT-SA12, on mmseg's Swin-T recipe
# (AdamW 6e-5, weight decay 0.01, linear warm-up then poly decay).
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa12.apple_in1k')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

optim_wrapper = dict(
    constructor='NoDecayOptimWrapperConstructor', paramwise_cfg=dict(_delete_=True))
