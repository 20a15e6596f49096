# Mask R-CNN 1x on COCO with FastViT-SA12 (the FastViT paper's detection setting), on mmdet's Swin-T
# recipe (AdamW 1e-4, weight decay 0.05, 12 epochs).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # Train unfused; for inference set deploy=True and load a checkpoint made by
        # tools/deployment/reparameterize.py.
        deploy=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/fastvit_sa12.apple_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No weight decay on norms, the conditional positional encodings and layer scales.
optim_wrapper = dict(
    constructor='NoDecayOptimWrapperConstructor', paramwise_cfg=dict(_delete_=True))
