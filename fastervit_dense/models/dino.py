"""NVlabs' FasterViT DINO detectors (IDEA-Research DINO layout) in mmdet's DINO: the key mapping.

NVlabs trained FasterViT's DINO detectors with their copy of IDEA-Research's DINO code
(NVlabs/FasterViT ``downstream/object_detection/dino``) and published one of them,
``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth`` (``configs/fastervit/
dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py`` is its mmdet config). :func:`convert_dino`
renames that layout's weights into the config's model, which then loads them strictly:

* backbone ``backbone.0.*`` -> ``backbone.*`` (the output norms ``norm{i}`` -> ``out_norm{i}``);
  tensors the kit recomputes from the input (position-bias tables and caches) are dropped;
* input projections -> the ChannelMapper (``neck.convs.*``, ``neck.extra_convs.*``);
* encoder and decoder layers -> mmdet's (``norm1/2/3`` reordered as mmdet applies them);
* the decoder's class and box heads, shared by its layers, -> one copy per layer in
  ``bbox_head.cls_branches.{0..L-1}`` / ``reg_branches``; the encoder's -> branch ``L``;
* the 91 rows indexed by COCO category id (class heads, the denoising label book) -> the 80 rows of
  mmdet's COCO classes, in ``CocoDataset``'s order.

:class:`DINOCheckpoints` is the layout's adapter (kind ``'dino'``) in the kit's one checkpoint
pipeline; the detector the weights must fill comes from an mmdet config, which only the OpenMMLab
layer reads (:mod:`fastervit_dense.mm.dino_checkpoint`). Pure torch: no mmdet needed here.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch

from ..checkpoint import CheckpointAdapter, CheckpointError, register_adapter
from .fastervit import is_recomputable_key

__all__ = ['COCO_CATEGORY_IDS', 'DINOCheckpoints', 'convert_dino', 'is_dino_layout']

#: COCO's category ids of mmdet's 80 classes, in ``CocoDataset.METAINFO['classes']`` order.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                     24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47,
                     48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70,
                     72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

# (official, mmdet) renames inside one encoder / decoder layer. DINO's decoder layer runs self
# attention, cross attention, FFN and normalises after each with norm2, norm1, norm3.
_ENCODER_LAYER = [('self_attn.', 'self_attn.'), ('norm1.', 'norms.0.'), ('norm2.', 'norms.1.'),
                  ('linear1.', 'ffn.layers.0.0.'), ('linear2.', 'ffn.layers.1.')]
_DECODER_LAYER = [('self_attn.', 'self_attn.attn.'), ('norm2.', 'norms.0.'),
                  ('cross_attn.', 'cross_attn.'), ('norm1.', 'norms.1.'), ('norm3.', 'norms.2.'),
                  ('linear1.', 'ffn.layers.0.0.'), ('linear2.', 'ffn.layers.1.')]
_SIMPLE = {'transformer.tgt_embed.weight': 'query_embedding.weight',
           'transformer.level_embed': 'level_embed',
           'transformer.enc_output.weight': 'memory_trans_fc.weight',
           'transformer.enc_output.bias': 'memory_trans_fc.bias',
           'transformer.enc_output_norm.weight': 'memory_trans_norm.weight',
           'transformer.enc_output_norm.bias': 'memory_trans_norm.bias',
           'transformer.decoder.norm.weight': 'decoder.norm.weight',
           'transformer.decoder.norm.bias': 'decoder.norm.bias'}
# The decoder's heads appear twice in the official state dict (the model's class_embed /
# bbox_embed and the decoder's alias of the same modules).
_ALIASES = re.compile(r'^transformer\.decoder\.(class_embed|bbox_embed)\.')


def is_dino_layout(state_dict) -> bool:
    """Whether ``state_dict`` is an IDEA-Research DINO detector's (two-stage, ``tgt_embed``)."""
    return 'transformer.tgt_embed.weight' in state_dict and any(
        k.startswith('transformer.decoder.layers.') for k in state_dict)


class _Renaming:
    """One conversion: the source weights, the converted ones, and which source keys were placed."""

    def __init__(self, state_dict, category_ids):
        self.state_dict, self.category_ids = state_dict, category_ids
        self.out, self.used = OrderedDict(), set()

    def put(self, key: str, target: str, rows: bool = False):
        value = self.state_dict[key]
        if rows and self.category_ids is not None:
            needed = max(self.category_ids) + 1
            if value.shape[0] < needed:
                raise CheckpointError(f'{key} has {value.shape[0]} rows; rows indexed by COCO '
                                      f'category id need at least {needed}: is this a COCO '
                                      'detector?')
            value = value[list(self.category_ids)]  # a copy
        elif rows:
            value = value.clone()
        self.out[target] = value
        self.used.add(key)

    def require(self, key: str, why: str):
        if key not in self.state_dict:
            raise CheckpointError(f'{key} is missing: {why}')

    def indices(self, pattern: str) -> list:
        return sorted({int(m.group(1)) for k in self.state_dict for m in [re.match(pattern, k)] if m})

    def backbone(self) -> int:
        """``backbone.0.*`` -> ``backbone.*``; returns the number of output levels."""
        for key in self.state_dict:
            name = key[len('backbone.0.'):]
            if key.startswith('backbone.0.'):
                self.used.add(key)
                if not is_recomputable_key(name):
                    self.out['backbone.' + re.sub(r'^norm(\d+)\.', r'out_norm\1.', name)] = \
                        self.state_dict[key]
        levels = len({k.split('.')[1] for k in self.out if re.match(r'backbone\.out_norm\d+\.', k)})
        if levels == 0:
            raise CheckpointError('the checkpoint has no backbone output norms '
                                  '"backbone.0.norm{i}.*": not a FasterViT DINO detector')
        return levels

    def input_projections(self, num_outputs: int):
        """``input_proj.{level}`` -> the ChannelMapper's convs, then its extra convs."""
        for level in self.indices(r'input_proj\.(\d+)\.'):
            target = (f'neck.convs.{level}' if level < num_outputs else
                      f'neck.extra_convs.{level - num_outputs}')
            for part, name in (('0', 'conv'), ('1', 'gn')):
                for kind in ('weight', 'bias'):
                    key = f'input_proj.{level}.{part}.{kind}'
                    if key in self.state_dict:
                        self.put(key, f'{target}.{name}.{kind}')

    def transformer(self):
        """Encoder and decoder layers, the reference-point head and the single tensors."""
        for key in list(self.state_dict):
            for stack, renames in (('encoder', _ENCODER_LAYER), ('decoder', _DECODER_LAYER)):
                match = re.match(rf'transformer\.{stack}\.layers\.(\d+)\.(.+)$', key)
                renamed = [f'{stack}.layers.{match.group(1)}.{new}{match.group(2)[len(old):]}'
                           for old, new in renames if match and match.group(2).startswith(old)]
                if renamed:
                    self.put(key, renamed[0])
            if key.startswith('transformer.decoder.ref_point_head.'):
                self.put(key, key[len('transformer.'):])
            if key in _SIMPLE:
                self.put(key, _SIMPLE[key])

    def box_mlp(self, prefix: str, target: str):
        """DINO's 3-layer box MLP (``layers.{0,1,2}``) -> mmdet's Sequential (``{0,2,4}``, ReLUs
        between)."""
        for layer, index in ((0, 0), (1, 2), (2, 4)):
            for kind in ('weight', 'bias'):
                key = f'{prefix}layers.{layer}.{kind}'
                self.require(key, 'the box head of a DINO checkpoint has three linear layers')
                self.put(key, f'{target}.{index}.{kind}')

    def heads(self):
        """The decoder's heads, one per layer, then the encoder's; the denoising label book."""
        layers = len(self.indices(r'transformer\.decoder\.layers\.(\d+)\.'))
        for layer in range(layers):
            for kind in ('weight', 'bias'):
                key = f'class_embed.{layer}.{kind}'
                self.require(key, f'a DINO checkpoint has a class head per decoder layer ({layers})')
                self.put(key, f'bbox_head.cls_branches.{layer}.{kind}', rows=True)
            self.box_mlp(f'bbox_embed.{layer}.', f'bbox_head.reg_branches.{layer}')
        for kind in ('weight', 'bias'):
            key = f'transformer.enc_out_class_embed.{kind}'
            self.require(key, 'expected a two-stage DINO (two_stage_type "standard") with its own '
                              'encoder heads')
            self.put(key, f'bbox_head.cls_branches.{layers}.{kind}', rows=True)
        self.box_mlp('transformer.enc_out_bbox_embed.', f'bbox_head.reg_branches.{layers}')
        # dn_labelbook_size + 1 rows indexed by category id
        if 'label_enc.weight' in self.state_dict:
            self.put('label_enc.weight', 'dn_query_generator.label_embedding.weight', rows=True)

    def unplaced(self) -> list:
        return [k for k in self.state_dict if k not in self.used and not _ALIASES.match(k)]


def convert_dino(state_dict: Dict[str, torch.Tensor],
                 category_ids: Optional[Sequence[int]] = COCO_CATEGORY_IDS
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """The weights of an IDEA-Research-layout DINO with a FasterViT backbone, in mmdet's DINO.

    ``category_ids``: the rows of the class heads and of the denoising label book to keep, in
    mmdet's class order (default: COCO's 80 of 91); None keeps every row as it is. Raises
    :class:`~fastervit_dense.checkpoint.CheckpointError` for a state dict of another layout, or with
    weights this conversion would not place (so nothing is dropped silently).
    """
    if not is_dino_layout(state_dict):
        raise CheckpointError('not a DINO detector in the IDEA-Research layout (no '
                              '"transformer.tgt_embed.weight" and decoder layers): expected a '
                              'checkpoint of NVlabs/FasterViT downstream/object_detection/dino, '
                              'e.g. DINO_4scale_faster_vit_4_21k_224_ms_coco.pth')
    renaming = _Renaming(state_dict, category_ids)
    renaming.input_projections(renaming.backbone())
    renaming.transformer()
    renaming.heads()
    left = renaming.unplaced()
    if left:
        raise CheckpointError(f'{len(left)} weights of the DINO checkpoint have no place in mmdet\'s '
                              f'DINO: {", ".join(left[:8])}' + (' ...' if len(left) > 8 else '') +
                              ' (a segmentation head, or a backbone other than FasterViT?)')
    return renaming.out


class DINOCheckpoints(CheckpointAdapter):
    """NVlabs' FasterViT DINO detectors (IDEA-Research layout) -> mmdet's DINO. Converted weights
    fill a detector exactly; which one, an mmdet config says (:mod:`fastervit_dense.mm.
    dino_checkpoint`). ``category_ids``: as :func:`convert_dino`'s."""

    kind = 'dino'
    unexpected_ok = False
    fit_hint = 'is it the config of the same backbone preset and number of levels?'

    def __init__(self, category_ids: Optional[Sequence[int]] = COCO_CATEGORY_IDS):
        self.category_ids = category_ids

    def convert(self, state_dict):
        return convert_dino(state_dict, self.category_ids)

    def may_be_missing(self, key: str) -> bool:
        return False


register_adapter(DINOCheckpoints())
