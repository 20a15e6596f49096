"""Exports a backbone, or a whole segmentor, to ONNX with dynamic batch, height and width: one
file for every input size. FastViT is exported in its fused (deploy) form.

    python tools/deployment/export_onnx.py CONFIG OUT.onnx [--checkpoint CKPT] [--what backbone|model]
                                           [--shape H W] [--verify 320x480,97x300,64x64]

``--what model`` exports a segmentor (e.g. UperNet) from image to per-pixel class logits at the
input's size; adaptive pooling layers (UperNet's pyramid pooling) are swapped for an exact
matrix form that exports with dynamic sizes (``fastervit_dense.deploy``). ``--verify`` runs the exported file with onnxruntime at each size and compares it with
PyTorch (relative to the output's largest magnitude).
"""
import argparse
import os.path as osp
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from fastervit_dense.launch import build_model, load_config  # noqa: E402


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
    from fastervit_dense.deploy import make_exportable
    # eval() on the wrapper too: torch.onnx.export restores the top module's mode afterwards.
    return SegmentorLogits(make_exportable(model)).eval()


def export(module, out, shape):
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        num_outputs = len(module(x)) if isinstance(module(x), (tuple, list)) else 1
    names = [f'out{i}' for i in range(num_outputs)]
    axes = {'x': {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({n: {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'} for n in names})
    torch.onnx.export(module, x, out, input_names=['x'], output_names=names, dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    return names


def verify(module, out, sizes):
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    errors = {}
    for height, width in sizes:
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            expected = module(x)
        expected = expected if isinstance(expected, (tuple, list)) else [expected]
        outputs = session.run(None, {'x': x.numpy()})
        errors[f'{height}x{width}'] = max(
            float(np.abs(o - e.numpy()).max() / max(np.abs(e.numpy()).max(), 1e-12))
            for o, e in zip(outputs, expected))
    return errors


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
    names = export(module, args.out, args.shape)
    print(f'exported {args.what} to {args.out} (outputs: {", ".join(names)}; dynamic batch, '
          'height and width)')
    if args.verify:
        sizes = [tuple(int(v) for v in s.split('x')) for s in args.verify.split(',')]
        for size, error in verify(module, args.out, sizes).items():
            print(f'  onnxruntime vs PyTorch at {size}: max relative difference {error:.2e}')


if __name__ == '__main__':
    main()
