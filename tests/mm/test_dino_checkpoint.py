"""The converter of NVlabs' FasterViT DINO detector (IDEA-Research layout) into mmdet's DINO.

The official layout is known here from ``tests/data/dino_official_layout.txt``, the keys and shapes
of the official model's state dict as ``tools/model_converters/dino_parity.py`` wrote them from
NVlabs' code (that script also compares the two models' detections; the tests never need the
official code). Tensors are on the meta device unless a test reads their values."""
import os
import re

import pytest
import torch

from fastervit_dense.checkpoint import CheckpointError
from fastervit_dense.mm.dino_checkpoint import (COCO_CATEGORY_IDS, check_against_config,
                                                convert_dino)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTING = os.path.join(ROOT, 'tests', 'data', 'dino_official_layout.txt')
CONFIG = os.path.join(ROOT, 'configs', 'fastervit',
                      'dino-4scale_fastervit-4-21k-224_8xb2-12e_coco.py')


def official_layout():
    state_dict = {}
    with open(LISTING) as f:
        for line in f:
            if line.startswith('#'):
                continue
            key, shape = line.rstrip('\n').split('\t')
            dims = tuple(int(d) for d in shape.split(',')) if shape else ()
            state_dict[key] = torch.empty(dims, device='meta')
    return state_dict


def test_the_listing_is_the_published_configuration():
    state_dict = official_layout()
    assert state_dict['transformer.tgt_embed.weight'].shape == (900, 256)
    assert state_dict['class_embed.0.weight'].shape == (91, 256)
    assert state_dict['label_enc.weight'].shape == (92, 256)
    # windows of 14 in stage 3 (a 27x27 offset table), no carrier tokens
    assert state_dict['backbone.0.levels.2.blocks.0.attn.pos_emb_funct.relative_coords_table'] \
        .shape == (1, 27, 27, 2)
    assert not any('hat_' in k or 'global_tokenizer' in k for k in state_dict)
    assert {k.split('.')[2] for k in state_dict if re.match(r'backbone\.0\.norm\d\.', k)} == \
        {'norm1', 'norm2', 'norm3'}


def test_the_official_layout_fills_the_configs_detector_exactly():
    converted = convert_dino(official_layout())
    check_against_config(converted, CONFIG)  # raises on any missing, unexpected or misshapen key
    assert len(converted) == 773
    # a Config given instead of a path is left as it was (its ImageNet weights named)
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    check_against_config(converted, cfg)
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'


def test_values_land_where_mmdet_reads_them():
    state_dict = official_layout()

    def real(key):
        state_dict[key] = torch.randn(state_dict[key].shape)
        return state_dict[key]

    shared_cls = real('class_embed.0.weight')
    for layer in range(1, 6):  # the decoder's heads are one module in the official model
        state_dict[f'class_embed.{layer}.weight'] = shared_cls
    enc_bias = real('transformer.enc_out_class_embed.bias')
    box_last = real('bbox_embed.3.layers.2.weight')
    box_mid = real('transformer.enc_out_bbox_embed.layers.1.bias')
    labels = real('label_enc.weight')
    norm_ca = real('transformer.decoder.layers.4.norm1.weight')  # after cross attention
    norm_sa = real('transformer.decoder.layers.4.norm2.weight')  # after self attention
    out_norm = real('backbone.0.norm2.running_var')
    proj = real('input_proj.3.0.weight')

    out = convert_dino(state_dict)
    ids = list(COCO_CATEGORY_IDS)
    for layer in range(6):
        assert torch.equal(out[f'bbox_head.cls_branches.{layer}.weight'], shared_cls[ids])
    assert torch.equal(out['bbox_head.cls_branches.6.bias'], enc_bias[ids])  # encoder: branch 6
    assert torch.equal(out['bbox_head.reg_branches.3.4.weight'], box_last)
    assert torch.equal(out['bbox_head.reg_branches.6.2.bias'], box_mid)
    assert torch.equal(out['dn_query_generator.label_embedding.weight'], labels[ids])
    assert out['decoder.layers.4.norms.0.weight'] is norm_sa
    assert out['decoder.layers.4.norms.1.weight'] is norm_ca
    assert out['backbone.out_norm2.running_var'] is out_norm
    assert out['neck.extra_convs.0.conv.weight'] is proj
    # person (id 1) is mmdet's class 0, toothbrush (id 90) its class 79
    assert ids[0] == 1 and ids[79] == 90 and len(set(ids)) == 80
    # what the kit recomputes from the input is not carried over
    assert not any(k.endswith(('relative_bias', 'relative_coords_table',
                               'relative_position_index')) for k in out)


def test_foreign_or_incomplete_checkpoints_are_refused_with_the_reason():
    with pytest.raises(CheckpointError, match='not a DINO detector in the IDEA-Research layout'):
        convert_dino({'patch_embed.conv_down.0.weight': torch.zeros(1)})
    state_dict = official_layout()
    state_dict['segmentation_head.weight'] = torch.empty(3, device='meta')
    with pytest.raises(CheckpointError, match='1 weights of the DINO checkpoint have no place '
                       'in mmdet.s DINO: segmentation_head.weight'):
        convert_dino(state_dict)
    state_dict = official_layout()
    del state_dict['transformer.enc_out_class_embed.weight']
    with pytest.raises(CheckpointError, match='enc_out_class_embed.weight is missing'):
        convert_dino(state_dict)
    # weights of another backbone preset do not fit the config
    converted = convert_dino(official_layout())
    converted['backbone.levels.2.blocks.0.attn.qkv.weight'] = torch.empty(3, 3, device='meta')
    with pytest.raises(CheckpointError, match=r'does not fit the detector of .*dino-4scale.*: 1 '
                       r'tensors with other shapes \(backbone.levels.2.blocks.0.attn.qkv.weight: '
                       r'checkpoint \(3, 3\) vs model \(.*same backbone preset'):
        check_against_config(converted, CONFIG)


def dino2mm_main():
    """``main`` of tools/model_converters/dino2mm.py."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'dino2mm', os.path.join(ROOT, 'tools', 'model_converters', 'dino2mm.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_command_line_writes_nothing_when_it_fails(tmp_path, capsys):
    main = dino2mm_main()
    source = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {'patch_embed.conv_down.0.weight': torch.zeros(2)}}, source)
    dst = tmp_path / 'out.pth'
    assert main([str(source), str(dst), '--config', CONFIG]) == 1
    assert 'not a DINO detector' in capsys.readouterr().err
    assert not dst.exists()

    class Payload:
        def __reduce__(self):
            return (print, ('unpickled',))

    torch.save({'model': {}, 'extra': Payload()}, source)
    assert main([str(source), str(dst), '--config', CONFIG]) == 1
    captured = capsys.readouterr()
    assert 'refused to load' in captured.err and 'could run code' in captured.err
    assert 'unpickled' not in captured.out  # the payload never ran
    assert not dst.exists()


def test_decoder_layers_share_their_heads_as_in_nvlabs_training():
    """The DINO recipe's head: one class and one box branch for the six decoder layers (one set of
    parameters, one gradient), the encoder's own; mmdet's state-dict layout, kept by deepcopy (EMA),
    and the converted layout loads into it."""
    import copy

    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import fastervit_dense.mm  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'fastervit',
                                       'dino-4scale_fastervit-0_8xb2-12e_coco.py'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    assert type(head).__name__ == 'SharedDecoderDINOHead'
    for branches in (head.cls_branches, head.reg_branches):
        assert len(branches) == 7
        assert all(branches[i] is branches[0] for i in range(6)) and branches[6] is not branches[0]
    # mmdet's layout: an entry per layer, the decoder's holding the same tensors
    keys = [k for k in head.state_dict() if k.startswith('cls_branches.')]
    assert keys == [f'cls_branches.{i}.{p}' for i in range(7) for p in ('weight', 'bias')]
    assert len(list(head.parameters())) == 2 * (2 + 6)  # cls (w, b) and reg (3 x (w, b)), twice
    # a loss through layer 3 only reaches the shared parameters
    head.cls_branches[3](torch.randn(2, 256)).sum().backward()
    assert head.cls_branches[0].weight.grad is not None and head.cls_branches[6].weight.grad is None
    clone = copy.deepcopy(model).bbox_head
    assert clone.cls_branches[5] is clone.cls_branches[0]
    # the converted official layout fills the shared head of the published detector's config
    check_against_config(convert_dino(official_layout()), CONFIG)
