"""Exports a backbone, or a whole segmentor, to ONNX with dynamic batch, height and width: one
file for every input size. FastViT is exported in its fused (deploy) form.

    python tools/deployment/export_onnx.py CONFIG OUT.onnx [--checkpoint CKPT] [--what backbone|model]
                                           [--shape H W] [--verify 320x480,97x300,64x64]

``--what model`` exports a segmentor (e.g. UperNet) from image to per-pixel class logits at the
input's size; adaptive pooling layers (UperNet's pyramid pooling) are swapped for an exact matrix
form that exports with dynamic sizes (``fastervit_dense.utils.export``). ``--verify`` runs the
exported file with onnxruntime at each size and compares it with PyTorch (relative to the output's
largest magnitude). Backbones alone export without OpenMMLab too: ``python -m
fastervit_dense.utils.export fastervit-0 out.onnx``.
"""
import argparse

import torch
import torch.nn.functional as F

from fastervit_dense.mm.runner import build_model, load_config
from fastervit_dense.utils.export import compare_with_onnxruntime, export_onnx


class SegmentorLogits(torch.nn.Module):
    """Image -> class logits at the image's size, tensors only (for tracing)."""

    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, x):
        logits = self.segmentor._forward(x)
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=False)


def build(config, checkpoint, what):
    from mmengine.model import revert_sync_batchnorm

    from fastervit_dense import FastViT
    from fastervit_dense.checkpoint import extract_state_dict, load_checkpoint_file
    cfg = load_config(config)
    model = revert_sync_batchnorm(build_model(cfg))
    if checkpoint:
        model.load_state_dict(extract_state_dict(load_checkpoint_file(checkpoint)), strict=True)
    model.eval()
    for module in model.modules():
        if isinstance(module, FastViT):
            module.switch_to_deploy()
    if what == 'backbone':
        return model.backbone.eval()
    if cfg.default_scope != 'mmseg':
        raise SystemExit('--what model exports segmentors; for detectors export the backbone')
    from fastervit_dense.utils.export import make_exportable
    # eval() on the wrapper too: torch.onnx.export restores the top module's mode afterwards.
    return SegmentorLogits(make_exportable(model)).eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('out')
    parser.add_argument('--checkpoint', default=None, help='trained weights (default: random)')
    parser.add_argument('--what', choices=['backbone', 'model'], default='backbone')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], help='tracing size H W')
    parser.add_argument('--verify', default='320x480,97x300,64x64',
                        help='sizes to check with onnxruntime ("" to skip)')
    args = parser.parse_args(argv)
    module = build(args.config, args.checkpoint, args.what)
    names = export_onnx(module, args.out, args.shape)
    print(f'exported {args.what} to {args.out} (outputs: {", ".join(names)}; dynamic batch, '
          'height and width)')
    if args.verify:
        sizes = [tuple(int(v) for v in s.split('x')) for s in args.verify.split(',')]
        for size, error in compare_with_onnxruntime(module, args.out, sizes).items():
            print(f'  onnxruntime vs PyTorch at {size}: max relative difference {error:.2e}')


if __name__ == '__main__':
    main()
