# UperNet on ADE20K, 512x512 crops, 160k iterations, 8 GPUs x 2: the FasterViT paper's segmentation
# setting (FasterViT-2: 47.2 mIoU single-scale, against Swin-T's 44.5; figures not checked against
# the paper here). The recipe is Swin's (SwinTransformer/Swin-Transformer-Semantic-Segmentation
# configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py), which mmseg's Swin-T
# UperNet config inherited here reproduces: UperHead 512 channels and an auxiliary FCN head (0.4)
# with SyncBN, AdamW 6e-5, weight decay 0.01 and none on norms and position terms (FasterViT's:
# norms, position MLPs, the carrier tokenizer, layer scales), linear warm-up over 1500 iterations
# from 1e-6 then poly decay (power 1.0); test at 2048x512 keeping the ratio
# (tests/mm/test_protocols.py holds it). Not stated by the paper, so the kit's own: drop path 0.2
# (FasterViT-0) to 0.4 (-4), as Swin raises it with model size.
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
