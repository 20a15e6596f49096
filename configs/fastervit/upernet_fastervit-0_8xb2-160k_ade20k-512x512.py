# UperNet on ADE20K, 512x512 crops, 160k iterations, on mmseg's Swin-T recipe (AdamW 6e-5, weight
# decay 0.01, linear warm-up then poly decay).
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        # At 512x512 stage 3 is 32x32: 5x5 windows of 7 (padded to 35) whose 100 carrier tokens
        # attend globally. Whole-image testing at any ADE20K size runs on the same instance.
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_0_224_1k.pth.tar')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))

optim_wrapper = dict(
    constructor='NoDecayOptimWrapperConstructor', paramwise_cfg=dict(_delete_=True))
