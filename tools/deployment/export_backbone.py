"""Exports a FasterViT or FastViT backbone to ONNX with dynamic batch, height and width (one file
for every input size; FastViT fused) and compares it with PyTorch at other sizes.

    python tools/deployment/export_backbone.py fastervit-0 out.onnx [--checkpoint SOURCE]
        [--shape 224 224] [--verify 320x480,97x300]

Needs only the kit's core (torch, timm) and onnx/onnxruntime; ``export_onnx.py --what backbone``
does the same for the backbone of an mmdet / mmseg config.
"""
import argparse
import sys

from fastervit_dense.utils.export import build_backbone, export_and_compare
from fastervit_dense.utils.sizes import parse_sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('backbone', help='fastervit-<arch> or fastvit-<arch>')
    parser.add_argument('out', help='ONNX file to write')
    parser.add_argument('--checkpoint', default=None, help='weights: a path, URL or hf-hub id')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], help='tracing size H W')
    parser.add_argument('--verify', default='320x480,97x300', help='sizes to check ("" to skip)')
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.verify)
    except ValueError as error:
        raise SystemExit(f'--verify: {error}')
    try:
        model = build_backbone(args.backbone, args.checkpoint)
    except ValueError as error:
        raise SystemExit(str(error))
    print(export_and_compare(model, args.out, args.shape, sizes, args.backbone))
    return 0


if __name__ == '__main__':
    sys.exit(main())
