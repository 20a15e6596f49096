# Mask R-CNN 1x on COCO with FasterViT-0. No published figure (the FasterViT paper reports
# Cascade Mask R-CNN 3x). The recipe is mmdet's Swin-T Mask R-CNN 1x (configs/swin/
# mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py, inherited): AdamW 1e-4, weight decay 0.05 and none on
# norms and position terms, warm-up over 1000 iterations, 12 epochs with steps at 8 and 11, 8 GPUs
# x 2, box and mask AP (tests/mm/test_protocols.py holds it).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['fastervit_dense.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='FasterViT',
        arch='0',
        # The ImageNet windows (7 in every stage) with carrier tokens in stage 3, exactly as the
        # weights were trained: at 800x1333 stage 3 then has 8x12 windows whose 384 carrier tokens
        # attend globally, so stage 3 mixes information across the whole image. Stage 4 stays
        # local, as in pre-training (its carrier layers would start from scratch).
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
            'fastervit_0_224_1k.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No weight decay on norms, position MLPs, the carrier tokenizer and layer scales. The constructor
# applies this after custom_keys (mmengine's own rules stop at the first matching custom key).
optim_wrapper = dict(
    constructor='NoDecayOptimWrapperConstructor', paramwise_cfg=dict(_delete_=True))
