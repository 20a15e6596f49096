"""Exports a whole detector or segmentor (``--what model``), or its backbone, to ONNX: one file,
opset 17, standard operators only, for every input size; onnxruntime's and OpenVINO's CPU runtimes
run it.

    python tools/deployment/export_onnx.py CONFIG OUT.onnx [--what model|backbone]
        [--checkpoint CKPT] [--shape H W] [--verify 320x480,333x517] [--image IMG ...]
        [--verify-images 3] [--runtime onnxruntime|openvino] [--cfg-options k=v ...]

``--what model`` (the default) writes a graph from ``image`` (float32 (1, 3, H, W), BGR, 0-255, as
mmcv loads it; the config's normalisation and padding are in the graph) to

* detectors (DINO, Mask R-CNN, Cascade Mask R-CNN): ``dets`` (1, N, 5) = x1, y1, x2, y2, score in
  input pixels sorted by score, ``labels`` int64 (1, N), and with masks ``masks`` uint8 (1, N, H, W);
  score threshold, NMS and the per-image limit as in the config's ``test_cfg``;
* segmentors (UperNet, Semantic FPN): ``seg_logits`` (1, C, H, W) at the input size.

The caller resizes as it likes. Verification then runs the file (onnxruntime, or ``--runtime``) on
real images and compares it with mmdet's / mmseg's own inference of the same model on the same
image: the first ``--verify-images`` images of the config's test set (or the ``--image`` files),
each at its own size and resized to each ``--verify`` size. Detections are paired by label, box IoU
>= 0.98, score within 2e-3 and mask IoU >= 0.9; a detection that one side keeps and the other drops
at a cut-off (score threshold, per-image limit, NMS threshold) is a tie, reported apart, not a
disagreement; two-stage detectors are compared stage by stage (the file's detections against
mmdet's RoI head on the proposals the file's graph computes, those proposals against mmdet's RPN,
ties at the RPN's cut-offs apart), so that the RPN's near-equal scores cannot decide. A segmentor's argmax must agree on >= 99.5% of the pixels that are not ties and its
logits within 0.1% of their scale. Fewer than 5 detections compared in all is "nothing compared"
and fails too. A file that fails is kept beside OUT as ``*.failed-verification.onnx`` (never at OUT)
and the command exits with status 1; ``--verify none`` skips the check. Only when the config's
test images cannot be read does a random image at each ``--verify`` size stand in, and the command
says so.

``--what backbone`` writes the backbone alone (dynamic batch, height and width; outputs ``out0``...)
and compares it with PyTorch. FastViT is exported fused; ``--checkpoint`` takes a training
checkpoint or one fused by ``tools/deployment/reparameterize.py``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

from fastervit_dense.mm.deploy import build_for_export
from fastervit_dense.mm.runner import load_config, run_tool
from fastervit_dense.utils.sizes import parse_sizes


def failed_path(out: str) -> str:
    """Where a file that failed verification is kept: beside ``out``, named for it."""
    stem, ext = osp.splitext(out)
    return f'{stem}.failed-verification{ext or ".onnx"}'


def verify(model, cfg, path, sizes, args) -> bool:
    from fastervit_dense.mm.deploy.runtimes import open_runtime
    from fastervit_dense.mm.deploy.verify import (format_report, summarize, verification_images,
                                                  verify_export)
    images, source = verification_images(cfg, args.image, args.verify_images, sizes)
    framework = 'mmseg' if hasattr(model, 'decode_head') else 'mmdet'
    print(f'{args.runtime} vs {framework} on {source}:')
    reports = []
    for name, report in verify_export(model, open_runtime(path, args.runtime), images):
        print(format_report(name, report), flush=True)
        reports.append(report)
    problem = summarize(reports)
    if problem:
        print(f'verification failed: {problem}', file=sys.stderr)
        return False
    ties = sum(r.get('ties', 0) for r in reports)
    print(f'verified: the exported model agrees with {framework} in {len(reports)} comparisons'
          + (f' ({ties} detections or pixels at a cut-off, ties counted apart)' if ties else ''))
    return True


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
                        help='sizes HxW to verify at besides each image\'s own ("none" or "" '
                        'to skip verification)')
    parser.add_argument('--image', nargs='+', default=None,
                        help='images to verify on (default: the first --verify-images of the '
                        'config\'s test set)')
    parser.add_argument('--verify-images', type=int, default=3,
                        help='how many of the test set\'s images to verify on (default 3)')
    parser.add_argument('--runtime', choices=['onnxruntime', 'openvino'], default='onnxruntime',
                        help='the runtime that runs the file for verification')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. the test data\'s root)')
    args = parser.parse_args(argv)
    skip = args.verify.strip().lower() in ('', 'none')
    try:
        sizes = [] if skip else parse_sizes(args.verify)
    except ValueError as error:
        raise SystemExit(f'--verify: {error}')
    for path in args.image or []:
        if not osp.isfile(path):
            raise SystemExit(f'--image: {path} does not exist')
    cfg = load_config(args.config, args.cfg_options)
    model = build_for_export(cfg, args.checkpoint)
    if args.what == 'backbone':
        from fastervit_dense.utils.export import export_and_compare
        print(export_and_compare(model.backbone.eval(), args.out, args.shape or (224, 224), sizes,
                                 'the backbone'))
        return 0
    from fastervit_dense.mm.deploy import export_model, exportable
    try:
        module = exportable(model)
    except ValueError as error:
        raise SystemExit(str(error))
    # Written under a working name first: OUT only ever holds a whole, verified file.
    stem, ext = osp.splitext(args.out)
    working = f'{stem}.exporting{ext or ".onnx"}'
    try:
        names = export_model(module, working, args.shape or (320, 480))
    except BaseException:
        if osp.exists(working):
            os.remove(working)
        raise
    print(f'exported {type(model).__name__}: input image (1, 3, H, W) BGR 0-255, outputs '
          f'{", ".join(names)}; any height and width')
    if not skip and not verify(model, cfg, working, sizes, args):
        os.replace(working, failed_path(args.out))
        print(f'the exported model disagrees with the framework: the file is kept at '
              f'{failed_path(args.out)}, not at {args.out}'
              + (f' ({args.out} is from an earlier export)' if osp.exists(args.out) else ''),
              file=sys.stderr)
        return 1
    os.replace(working, args.out)
    print(f'written: {args.out}' + (' (not verified: --verify none)' if skip else ''))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
