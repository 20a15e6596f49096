# A Semantic FPN with a tiny FasterViT (hierarchical attention in stages 3-4, propagation, layer
# scale), as configs of version 0.1.0 were written: `custom_imports` names the package itself.
_base_ = '../../../configs/demo/fpn_fastervit-0_synthetic.py'
custom_imports = dict(imports=['fastervit_dense'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                  window_size=[7, 7, 7, 7], ct_size=2, dim=8, in_dim=8, mlp_ratio=2.,
                  hat=[False, False, True, True], layer_scale=0.5, propagation=True,
                  drop_path_rate=0.)),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    decode_head=dict(in_channels=[16, 16, 16, 16], channels=16))
