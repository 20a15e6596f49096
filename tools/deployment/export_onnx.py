"""Exports a whole detector or segmentor (``--what model``), or its backbone, to ONNX: one file,
opset 17, standard operators only, for every input size; onnxruntime's CPU provider runs it.

    python tools/deployment/export_onnx.py CONFIG OUT.onnx [--what model|backbone]
        [--checkpoint CKPT] [--shape H W] [--verify 320x480,333x517] [--image IMG]

``--what model`` (the default) writes a graph from ``image`` (float32 (1, 3, H, W), BGR, 0-255, as
mmcv loads it; the config's normalisation and padding are in the graph) to

* detectors (DINO, Mask R-CNN, Cascade Mask R-CNN): ``dets`` (1, N, 5) = x1, y1, x2, y2, score in
  input pixels sorted by score, ``labels`` int64 (1, N), and with masks ``masks`` uint8 (1, N, H, W);
  score threshold, NMS and the per-image limit as in the config's ``test_cfg``;
* segmentors (UperNet, Semantic FPN): ``seg_logits`` (1, C, H, W) at the input size.

The caller resizes as it likes. ``--verify`` runs the file with onnxruntime at each size and
compares it with mmdet's / mmseg's own inference of the same model on the same image (a random one,
or ``--image`` resized to the size): every exported detection must have an mmdet detection with
the same label, box IoU >= 0.98, score within 2e-3 and mask IoU >= 0.9; a segmentor's argmax must
agree on >= 99.5% of pixels. The command exits with status 1 when a size disagrees.

``--what backbone`` writes the backbone alone (dynamic batch, height and width; outputs ``out0``...)
and compares it with PyTorch. FastViT is exported in its fused form; ``--checkpoint`` takes a
training checkpoint or one fused by ``tools/deployment/reparameterize.py``.
"""
import argparse
import sys

import torch

from fastervit_dense.mm.deploy import build_for_export
from fastervit_dense.utils.export import parse_sizes


def verification_image(size, image_path=None):
    """A float (1, 3, H, W) BGR image with integer values: ``image_path`` resized to ``size``, or
    random."""
    from fastervit_dense.mm.deploy.verify import random_image
    height, width = size
    if image_path:
        import mmcv
        image = mmcv.imresize(mmcv.imread(image_path), (width, height))
        return torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return random_image(height, width)


def verify_model(model, path, sizes, image_path=None) -> bool:
    import numpy as np
    import onnxruntime as ort

    from fastervit_dense.mm.deploy.verify import (format_report, framework_detections,
                                                  framework_seg_logits, match_detections,
                                                  run_onnx, segmentation_agreement)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    agree = True
    for size in sizes:
        image = verification_image(size, image_path)
        outputs = run_onnx(path, image, session)
        name = f'{size[0]}x{size[1]}'
        if not all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == 'f'):
            print(f'  {name}: the exported model returned NaN or infinite values')
            agree = False
            continue
        if 'seg_logits' in outputs:
            report = segmentation_agreement(outputs['seg_logits'], framework_seg_logits(model, image))
        else:
            report = match_detections(outputs, framework_detections(model, image))
        print(format_report(name, report))
        agree &= report['agree']
    return agree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('out')
    parser.add_argument('--checkpoint', default=None, help='trained weights (default: random '
                        'weights, to try the export)')
    parser.add_argument('--what', choices=['model', 'backbone'], default='model')
    parser.add_argument('--shape', type=int, nargs=2, default=None,
                        help='tracing size H W (default 320 480 for a model, 224 224 for a '
                        'backbone); the file runs at every size')
    parser.add_argument('--verify', default='320x480,333x517',
                        help='sizes HxW to check with onnxruntime ("" to skip)')
    parser.add_argument('--image', default=None, help='image to verify on, resized to each size '
                        '(default: a random image)')
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.verify)
    except ValueError as error:
        raise SystemExit(f'--verify: {error}')
    model = build_for_export(args.config, args.checkpoint)
    if args.what == 'backbone':
        from fastervit_dense.utils.export import export_and_compare
        export_and_compare(model.backbone.eval(), args.out, args.shape or (224, 224), sizes,
                           'the backbone')
        return 0
    from fastervit_dense.mm.deploy import export_model, exportable
    try:
        module = exportable(model)
    except ValueError as error:
        raise SystemExit(str(error))
    names = export_model(module, args.out, args.shape or (320, 480))
    print(f'exported {type(model).__name__} to {args.out}: input image (1, 3, H, W) BGR 0-255, '
          f'outputs {", ".join(names)}; any height and width')
    if sizes:
        print(f'onnxruntime vs {"mmseg" if names == ["seg_logits"] else "mmdet"} on the same '
              f'image ({args.image or "random"}):')
        if not verify_model(model, args.out, sizes, args.image):
            hint = '' if args.checkpoint or names == ['seg_logits'] else (
                ': with random weights a detector\'s scores are near-equal, and float rounding '
                'decides such ties differently in any two runtimes; verify with --checkpoint of a '
                'trained model')
            print(f'the exported model disagrees with the framework at a size above{hint}',
                  file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
