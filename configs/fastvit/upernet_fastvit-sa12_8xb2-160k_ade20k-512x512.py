# UperNet on ADE20K, 512x512 crops, 160k iterations, 8 GPUs x 2, with FastViT-SA12. No published
# figure: the FastViT paper reports Semantic FPN only (fpn_fastvit-*). The recipe is Swin's UperNet
# (SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/
# upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py, as mmseg's Swin-T UperNet config
# inherited here reproduces it; tests/mm/test_protocols.py holds it), with no weight decay on norms,
# the conditional position encodings and layer scales.
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
