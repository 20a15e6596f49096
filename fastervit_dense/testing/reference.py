"""Helpers that build reference models and checkpoints in the published layouts, with random weights.

The official ``fastervit`` package is used here as a reference to compare against, never by the kit.
"""
import argparse
import math

import torch
import torch.nn as nn


def official_fastervit(arch: str, resolution, **kwargs) -> nn.Module:
    """The official any-resolution FasterViT (``fastervit==1.0.0``), built for ``resolution``."""
    import importlib
    module = importlib.import_module('fastervit.models.faster_vit_any_res')
    name = {'4-21k-224': 'faster_vit_4_21k_224', '4-21k-384': 'faster_vit_4_21k_384',
            '4-21k-512': 'faster_vit_4_21k_512', '4-21k-768': 'faster_vit_4_21k_768'}.get(
                arch, f'faster_vit_{arch}')
    builder = getattr(module, f'{name}_any_res')
    model = builder(pretrained=False, resolution=list(resolution), **kwargs)
    return model.eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights under which every branch of FasterViT matters.

    At default initialisation the window-attention bias (about 8) drowns the carrier tokens (bias 0),
    so a broken carrier path would go unseen. Here attention/MLP weights are at unit scale, layer
    scales near 1, and the window-bias MLP is driven negative so window and carrier tokens compete.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0, mean=0.0):
        return torch.randn(shape, generator=gen) * std + mean

    for name, p in model.named_parameters():
        if name.endswith('attn.pos_emb_funct.cpb_mlp.2.weight') and 'hat_attn' not in name:
            p.copy_(-normal(p.shape).abs() * 0.3 / math.sqrt(p.shape[1]) - 0.02)
        elif name.endswith('attn.pos_emb_funct.cpb_mlp.0.bias') and 'hat_attn' not in name:
            p.copy_(normal(p.shape).abs() + 0.5)
        elif 'gamma' in name:
            p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.5)
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            p.copy_(normal(p.shape, 1.0 / math.sqrt(fan_in)))
        elif name.endswith('weight'):
            p.copy_(normal(p.shape, 0.1, 1.0))
        else:
            p.copy_(normal(p.shape, 0.1))
    for name, b in model.named_buffers():
        if name.endswith('running_mean'):
            b.copy_(normal(b.shape, 0.1))
        elif name.endswith('running_var'):
            b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return model


def save_official_checkpoint(model: nn.Module, path, arch='faster_vit_0_224'):
    """Saves weights as the published FasterViT files are laid out: a timm training checkpoint."""
    torch.save({
        'epoch': 310,
        'arch': arch,
        'state_dict': model.state_dict(),
        'optimizer': {'state': {}, 'param_groups': [{'lr': 0.0, 'weight_decay': 0.05}]},
        'version': 2,
        'args': argparse.Namespace(model=arch, lr=0.005, batch_size=128, input_size=[3, 224, 224]),
        'metric': 78.2,
    }, path)
    return path


class StageFeatures:
    """Records the official model's stage features: the input of ``levels[i].downsample`` for
    stages 0-2 and the output of ``levels[3]``."""

    def __init__(self, model: nn.Module):
        self.features = {}
        self.handles = []
        for i, level in enumerate(model.levels):
            if level.downsample is not None:
                self.handles.append(level.downsample.register_forward_pre_hook(self._pre(i)))
            else:
                self.handles.append(level.register_forward_hook(self._post(i)))

    def _pre(self, i):
        def hook(module, args):
            self.features[i] = args[0].detach().clone()
        return hook

    def _post(self, i):
        def hook(module, args, output):
            self.features[i] = output.detach().clone()
        return hook

    def __call__(self, model, x):
        self.features = {}
        with torch.no_grad():
            model(x)
        return [self.features[i] for i in sorted(self.features)]


def load_into_official(model: nn.Module, path) -> nn.Module:
    """Loads a 224 official checkpoint into an official model built for another size: the official
    code keeps size-dependent buffers (bias caches, coordinate tables), which are left as built."""
    state_dict = torch.load(path, map_location='cpu', weights_only=False)['state_dict']
    own = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in state_dict if k not in kept]
    assert all(k.endswith(('relative_bias', 'relative_coords_table', 'relative_position_index'))
               for k in skipped), skipped
    model.load_state_dict(kept, strict=False)
    return model.eval()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest absolute difference over the reference's largest magnitude."""
    return ((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()


# ------------------------------------------------------------------------------------- FastViT
def timm_fastvit(arch: str, seed: int = 0, **kwargs) -> nn.Module:
    """timm's FastViT classification model with random, branch-exercising weights.

    Layer scales land at 0.05-0.1 (timm initialises them at 1e-5, which would hide the blocks): larger
    ones let activations grow through the 36-block variants until stage-4 attention saturates (logit
    spread in the thousands) and amplifies float rounding chaotically."""
    import timm
    model = timm.create_model(f'fastvit_{arch}', pretrained=False, **kwargs)
    randomize_(model, seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'gamma' in name:
                p.mul_(0.1)
    return model.eval()


def timm_fastvit_features(arch: str, weights_file) -> nn.Module:
    """timm's own ``features_only`` FastViT, loaded from a local classification-weights file."""
    import timm
    return timm.create_model(f'fastvit_{arch}', pretrained=True, features_only=True,
                             pretrained_cfg_overlay=dict(file=str(weights_file))).eval()


def _apple_network_indices(state_dict):
    """Stage -> (downsample index, positional-encoding index, blocks index) in Apple's flat
    ``network`` list: [blocks0, patch_embed1, blocks1, ..., patch_embed3, pos_enc3, blocks3]."""
    import re
    stages = sorted({int(m.group(1)) for k in state_dict for m in [re.match(r'stages\.(\d+)\.', k)] if m})
    indices, position = {}, 0
    for s in stages:
        down = pos = None
        if any(k.startswith(f'stages.{s}.downsample.') for k in state_dict):
            down, position = position, position + 1
        if any(k.startswith(f'stages.{s}.pos_emb.') for k in state_dict):
            pos, position = position, position + 1
        indices[s] = (down, pos, position)
        position += 1
    return indices


def to_apple_layout(state_dict, fused: bool = False):
    """timm FastViT weights -> the key layout of Apple's published ``fastvit_*.pth.tar`` files
    (``_reparam`` files when ``fused``)."""
    import re
    indices = _apple_network_indices(state_dict)
    out = {}
    for k, v in state_dict.items():
        m = re.match(r'stages\.(\d+)\.(downsample\.proj|pos_emb\.pos_enc|pos_emb\.reparam_conv|blocks)(.*)', k)
        if m:
            s, part, rest = int(m.group(1)), m.group(2), m.group(3)
            down, pos, blocks = indices[s]
            if part == 'downsample.proj':
                k = f'network.{down}.proj{rest}'
            elif part == 'pos_emb.pos_enc':
                k = f'network.{pos}.pe{rest}'
            elif part == 'pos_emb.reparam_conv':
                k = f'network.{pos}.reparam_conv{rest}'
            else:
                k = f'network.{blocks}{rest}'
        k = k.replace('stem.', 'patch_embed.', 1) if k.startswith('stem.') else k
        k = (k.replace('conv_kxk', 'rbr_conv').replace('conv_scale', 'rbr_scale')
             .replace('identity', 'rbr_skip').replace('final_conv', 'conv_exp')
             .replace('large_conv', 'lkb_origin').replace('.mlp.', '.convffn.')
             .replace('se.fc1', 'se.reduce').replace('se.fc2', 'se.expand'))
        k = re.sub(r'layer_scale(_\d)?\.gamma', r'layer_scale\1', k)
        if fused and '.proj.0.reparam_conv' in k:
            k = k.replace('.proj.0.reparam_conv', '.proj.0.lkb_reparam')
        if k.startswith('head.fc.'):
            k = 'head.' + k[len('head.fc.'):]
        out[k] = v
    return out


def pickled_globals(path) -> set:
    """'module.name' of every global a torch.save file's pickle refers to (read, never executed)."""
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == 'GLOBAL':
            found.add(arg.replace(' ', '.'))
        elif opcode.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
            strings.append(arg)
        elif opcode.name == 'STACK_GLOBAL':
            found.add('.'.join(strings[-2:]))
    return {g.replace('__builtin__.', 'builtins.') for g in found}


def non_torch_globals(path) -> set:
    return {g for g in pickled_globals(path)
            if not g.startswith(('torch.', 'collections.OrderedDict', '_codecs.'))}
