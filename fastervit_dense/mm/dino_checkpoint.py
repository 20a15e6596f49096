"""FasterViT DINO detectors in the IDEA-Research DINO layout, converted into mmdet's DINO.

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

Pure torch: it reads no file (see ``tools/model_converters/dino2mm.py``) and needs no mmdet.
"""
import copy
import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional

import torch

from ..checkpoint import CheckpointError
from ..models.fastervit import is_recomputable_key

__all__ = ['COCO_CATEGORY_IDS', 'convert_dino', 'is_dino_layout']

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


def _class_rows(tensor: torch.Tensor, key: str, category_ids) -> torch.Tensor:
    needed = max(category_ids) + 1
    if tensor.shape[0] < needed:
        raise CheckpointError(f'{key} has {tensor.shape[0]} rows; rows indexed by COCO category id '
                              f'need at least {needed}: is this a COCO detector?')
    return tensor[list(category_ids)].clone()


def _box_mlp(state_dict, prefix: str, target: str, out: dict, used: set):
    """DINO's 3-layer box MLP (``layers.{0,1,2}``) -> mmdet's Sequential (``{0,2,4}``, ReLUs
    between)."""
    for layer, index in ((0, 0), (1, 2), (2, 4)):
        for kind in ('weight', 'bias'):
            key = f'{prefix}layers.{layer}.{kind}'
            if key not in state_dict:
                raise CheckpointError(f'{key} is missing: the box head of a DINO checkpoint has '
                                      'three linear layers')
            out[f'{target}.{index}.{kind}'] = state_dict[key]
            used.add(key)


def convert_dino(state_dict: Dict[str, torch.Tensor],
                 category_ids: Optional[List[int]] = COCO_CATEGORY_IDS
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
    out, used = OrderedDict(), set()

    def rows(tensor, key):
        return tensor.clone() if category_ids is None else _class_rows(tensor, key, category_ids)

    # backbone
    for key, value in state_dict.items():
        if not key.startswith('backbone.0.'):
            continue
        used.add(key)
        name = key[len('backbone.0.'):]
        if is_recomputable_key(name):
            continue
        name = re.sub(r'^norm(\d+)\.', r'out_norm\1.', name)
        out[f'backbone.{name}'] = value
    num_outputs = len({k.split('.')[1] for k in out if re.match(r'backbone\.out_norm\d+\.', k)})
    if num_outputs == 0:
        raise CheckpointError('the checkpoint has no backbone output norms "backbone.0.norm{i}.*": '
                              'not a FasterViT DINO detector')

    # input projections -> ChannelMapper
    levels = sorted({int(m.group(1)) for k in state_dict
                     for m in [re.match(r'input_proj\.(\d+)\.', k)] if m})
    for level in levels:
        target = (f'neck.convs.{level}' if level < num_outputs else
                  f'neck.extra_convs.{level - num_outputs}')
        for part, name in (('0', 'conv'), ('1', 'gn')):
            for kind in ('weight', 'bias'):
                key = f'input_proj.{level}.{part}.{kind}'
                if key in state_dict:
                    out[f'{target}.{name}.{kind}'] = state_dict[key]
                    used.add(key)

    # encoder, decoder
    for key, value in state_dict.items():
        for stack, renames in (('encoder', _ENCODER_LAYER), ('decoder', _DECODER_LAYER)):
            match = re.match(rf'transformer\.{stack}\.layers\.(\d+)\.(.+)$', key)
            if not match:
                continue
            rest = match.group(2)
            for old, new in renames:
                if rest.startswith(old):
                    out[f'{stack}.layers.{match.group(1)}.{new}{rest[len(old):]}'] = value
                    used.add(key)
                    break
        match = re.match(r'transformer\.decoder\.ref_point_head\.(.+)$', key)
        if match:
            out[f'decoder.ref_point_head.{match.group(1)}'] = value
            used.add(key)
        if key in _SIMPLE:
            out[_SIMPLE[key]] = value
            used.add(key)

    # heads: one per decoder layer, then the encoder's
    num_decoder_layers = len({int(m.group(1)) for k in state_dict
                              for m in [re.match(r'transformer\.decoder\.layers\.(\d+)\.', k)] if m})
    for layer in range(num_decoder_layers):
        prefix = f'class_embed.{layer}.'
        for kind in ('weight', 'bias'):
            key = prefix + kind
            if key not in state_dict:
                raise CheckpointError(f'{key} is missing: a DINO checkpoint has a class head per '
                                      f'decoder layer ({num_decoder_layers})')
            out[f'bbox_head.cls_branches.{layer}.{kind}'] = rows(state_dict[key], key)
            used.add(key)
        _box_mlp(state_dict, f'bbox_embed.{layer}.', f'bbox_head.reg_branches.{layer}', out, used)
    for kind in ('weight', 'bias'):
        key = f'transformer.enc_out_class_embed.{kind}'
        if key not in state_dict:
            raise CheckpointError(f'{key} is missing: expected a two-stage DINO (two_stage_type '
                                  '"standard") with its own encoder heads')
        out[f'bbox_head.cls_branches.{num_decoder_layers}.{kind}'] = rows(state_dict[key], key)
        used.add(key)
    _box_mlp(state_dict, 'transformer.enc_out_bbox_embed.',
             f'bbox_head.reg_branches.{num_decoder_layers}', out, used)

    # the denoising label book: dn_labelbook_size + 1 rows indexed by category id
    if 'label_enc.weight' in state_dict:
        out['dn_query_generator.label_embedding.weight'] = rows(state_dict['label_enc.weight'],
                                                                'label_enc.weight')
        used.add('label_enc.weight')

    left = [k for k in state_dict if k not in used and not _ALIASES.match(k)]
    if left:
        raise CheckpointError(f'{len(left)} weights of the DINO checkpoint have no place in mmdet\'s '
                              f'DINO: {", ".join(left[:8])}' + (' ...' if len(left) > 8 else '') +
                              ' (a segmentation head, or a backbone other than FasterViT?)')
    return out


CONVERTER_VERSION = 1


def check_against_config(state_dict, config) -> None:
    """Raises :class:`CheckpointError` unless ``state_dict`` fills the detector of ``config`` (a
    path or an mmengine Config, left unchanged) exactly, key by key and shape by shape. The model
    is built on the meta device: nothing is allocated and no weights are downloaded."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        own = MODELS.build(cfg.model).state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            'the converted weights do not fit the config\'s detector'
            + (f'; shape mismatches: {"; ".join(mismatched[:6])}' if mismatched else '')
            + (f'; missing: {", ".join(missing[:6])}' if missing else '')
            + (f'; unexpected: {", ".join(unexpected[:6])}' if unexpected else '')
            + ': is it the config of the same backbone preset and number of levels?')


def convert_dino_file(src, dst, config, sha256: Optional[str] = None) -> dict:
    """Reads a DINO checkpoint (a path, URL or ``hf-hub:`` id) with the kit's safe reader, converts
    it, checks it against ``config``'s detector, and writes ``{'state_dict', 'meta'}`` atomically
    (mmdet's ``load_from`` and ``tools/test.py`` read it). A failure leaves no ``dst``."""
    from ..checkpoint import extract_state_dict, read_source, save_atomic
    from ..hub import sha256_of
    path, checkpoint = read_source(src, sha256=sha256)
    state_dict = convert_dino(extract_state_dict(checkpoint))
    check_against_config(state_dict, config)
    state_dict = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    meta = dict(source=os.path.basename(os.fspath(src)), source_sha256=sha256_of(path),
                kind='dino', config=os.fspath(config) if isinstance(config, (str, os.PathLike))
                else None, classes='COCO (80)', converter_version=CONVERTER_VERSION)
    save_atomic({'state_dict': state_dict, 'meta': meta}, dst)
    return meta
