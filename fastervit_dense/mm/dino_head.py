"""DINO's head as IDEA-Research's DINO code builds it (registered in mmdet as
``SharedDecoderDINOHead`` when mmdet is installed).

IDEA-Research's DINO, on which NVlabs trained FasterViT's DINO detectors, shares one class head and
one box head across the six decoder layers (``dec_pred_class_embed_share`` and
``dec_pred_bbox_embed_share``) while the encoder's two-stage heads are their own
(``two_stage_*_share=False``). mmdet's ``DINOHead`` either gives every layer its own heads (with box
refinement) or shares one pair with the encoder too. This head keeps mmdet's state-dict layout
(``cls_branches.{0..6}``, ``reg_branches.{0..6}``; the decoder's entries hold the same tensors), so
mmdet's DINO checkpoints of the same shape load into it (the last decoder layer's heads win) and its
checkpoints load into mmdet's ``DINOHead``.
"""
import torch.nn as nn
from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS

__all__ = ['SharedDecoderDINOHead']


@MODELS.register_module()
class SharedDecoderDINOHead(DINOHead):
    """:class:`mmdet.models.dense_heads.DINOHead` whose decoder layers share one class branch and
    one box branch; with ``as_two_stage`` the encoder's branches (the last index) stay separate."""

    def _init_layers(self) -> None:
        super()._init_layers()
        decoder_layers = self.num_pred_layer - 1 if self.as_two_stage else self.num_pred_layer
        for name in ('cls_branches', 'reg_branches'):
            branches = list(getattr(self, name))
            setattr(self, name, nn.ModuleList([branches[0]] * decoder_layers +
                                              branches[decoder_layers:]))
