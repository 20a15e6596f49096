"""Evaluates an exported model (``export_onnx.py``) as users judge one: the config's test dataloader
through the file and the config's own evaluator (COCO box and mask mAP; mmseg's IoU metric), on
onnxruntime and/or OpenVINO; with ``--checkpoint`` also mmdet's / mmseg's own inference of the
trained model, in one table with the latency per image of each.

    python tools/deployment/test_onnx.py CONFIG MODEL.onnx [--checkpoint CKPT]
        [--runtime onnxruntime [openvino]] [--threads N] [--max-images N] [--out RESULT.json]
        [--cfg-options k=v ...]

Each image reaches the file as the test pipeline gives it (resized, BGR, 0-255), one at a time, and
so does mmdet's / mmseg's model (in a batch their preprocessors pad images to the batch's largest,
which changes a detector's results a little: see fastervit_dense/mm/deploy/evaluate.py); the outputs are
brought back to the original image as the framework does (boxes by the scale factor, masks and
logits resized). Latency is the runtime's (or the model's) time alone, without data loading, with
``--threads`` threads for every one of them (default: PyTorch's current number).
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from fastervit_dense.mm.deploy import build_for_export
from fastervit_dense.mm.deploy.evaluate import evaluate_exported
from fastervit_dense.mm.deploy.runtimes import RUNTIMES, open_runtime
from fastervit_dense.mm.runner import load_config, prepare_scope, run_tool
from fastervit_dense.utils.benchmark import cpu_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('model', help='the exported .onnx file')
    parser.add_argument('--checkpoint', default=None,
                        help='the trained weights the file was exported from: adds mmdet\'s / '
                        'mmseg\'s own inference to the table')
    parser.add_argument('--runtime', nargs='+', choices=RUNTIMES, default=['onnxruntime'])
    parser.add_argument('--threads', type=int, default=None,
                        help='threads for each runtime and PyTorch (default: PyTorch\'s)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='evaluate on the first N test images only')
    parser.add_argument('--out', default=None, help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def table(results) -> str:
    names = list(results)
    metrics = [k for k in results[names[0]]['metrics']
               if all(k in results[n]['metrics'] for n in names)]
    width = max([len(m) for m in metrics] + [len('ms per image')]) + 2
    lines = ['metric'.ljust(width) + ''.join(n.rjust(14) for n in names)]
    for metric in metrics:
        lines.append(metric.ljust(width) + ''.join(
            f'{results[n]["metrics"][metric]:14.4f}' for n in names))
    lines.append('ms per image'.ljust(width) + ''.join(
        f'{results[n]["ms_per_image"]:14.1f}' for n in names))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    for path, what in ((args.model, 'exported model'), (args.checkpoint, 'checkpoint')):
        if path and not osp.isfile(path):
            raise SystemExit(f'{what} {path!r} does not exist')
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    cfg = load_config(args.config, args.cfg_options)
    prepare_scope(cfg)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    model = build_for_export(cfg, args.checkpoint) if args.checkpoint else None
    runtimes = {name: open_runtime(args.model, name, threads) for name in args.runtime}
    results = evaluate_exported(cfg, runtimes, model, args.max_images)
    images = next(iter(results.values()))['images']
    print(f'{args.model} on {images} test images of {osp.basename(args.config)}, '
          f'{threads} thread(s) of {cpu_model()}:')
    print(table(results))
    if args.out:
        folder = osp.dirname(osp.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        with open(args.out + '.tmp', 'w') as f:
            json.dump(dict(config=args.config, model=args.model, checkpoint=args.checkpoint,
                           threads=threads, cpu=cpu_model(), results=results), f, indent=2)
        os.replace(args.out + '.tmp', args.out)
    return results


if __name__ == '__main__':
    run_tool(main)
