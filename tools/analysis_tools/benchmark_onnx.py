"""Whole exported models on onnxruntime next to mmdet's / mmseg's own PyTorch inference, CPU.

For each config it builds the model (random weights unless ``--checkpoint``), exports it with
``fastervit_dense.mm.deploy`` (traced once at 320x480), and at each size times, alternately,
PyTorch (the framework's ``test_step`` on the same fused model: preprocessing, model,
post-processing) and onnxruntime's CPU provider on the same image, with the same number of
threads. Latency is the median of ``--repeat`` calls after ``--warmup``; the ratio is
onnxruntime / PyTorch. With random weights a two-stage detector's boxes would all fall under
the score threshold, so its threshold is set to 0 and it returns its full ``max_per_img``
detections (with masks), the work a trained model does on a busy image.

    python tools/analysis_tools/benchmark_onnx.py CONFIG [CONFIG ...] [--sizes 512x512,800x1333]
        [--repeat 3] [--threads 2]

Writes ``OUT/benchmark_onnx.json`` and ``OUT/benchmark_onnx.md``.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import tempfile
import time
import warnings

import torch

from fastervit_dense.utils.sizes import parse_sizes

warnings.filterwarnings('ignore')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--checkpoint', default=None, help='weights for a single config')
    parser.add_argument('--sizes', default='512x512,800x1333', help='comma list of HxW')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default='work_dirs/benchmarks')
    return parser.parse_args(argv)


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def benchmark(config, checkpoint, sizes, repeat, warmup, threads):
    import onnxruntime as ort

    from fastervit_dense.mm.deploy import build_for_export, export_model, exportable
    from fastervit_dense.mm.deploy.verify import (framework_detections, framework_seg_logits,
                                                  random_image, run_onnx)
    model = build_for_export(config, checkpoint)
    roi_head = getattr(model, 'roi_head', None)
    if checkpoint is None and roi_head is not None:
        roi_head.test_cfg.score_thr = 0.0
    segmentor = hasattr(model, 'decode_head')
    reference = framework_seg_logits if segmentor else framework_detections
    records = []
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'model.onnx')
        export_seconds, _ = timed(lambda: export_model(exportable(model), path, (320, 480)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        for height, width in sizes:
            image = random_image(height, width)
            torch_times, onnx_times = [], []
            for step in range(warmup + repeat):
                torch_seconds, _ = timed(lambda: reference(model, image))
                onnx_seconds, outputs = timed(lambda: run_onnx(path, image, session))
                if step >= warmup:
                    torch_times.append(torch_seconds)
                    onnx_times.append(onnx_seconds)
            torch_ms = 1000 * statistics.median(torch_times)
            onnx_ms = 1000 * statistics.median(onnx_times)
            record = dict(config=osp.basename(config), model=type(model).__name__,
                          size=f'{height}x{width}', pytorch_ms=round(torch_ms, 1),
                          onnxruntime_ms=round(onnx_ms, 1), ratio=round(onnx_ms / torch_ms, 3),
                          export_s=round(export_seconds, 1),
                          file_mib=round(os.path.getsize(path) / 2**20, 1),
                          detections=None if segmentor else int(outputs['dets'].shape[0]))
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def to_markdown(records, threads) -> str:
    lines = ['| config | size | PyTorch ms | onnxruntime ms | onnxruntime / PyTorch | '
             'detections | file MiB | export s |', '|---|---|---|---|---|---|---|---|']
    for r in records:
        lines.append(f'| {r["config"]} | {r["size"]} | {r["pytorch_ms"]:.0f} | '
                     f'{r["onnxruntime_ms"]:.0f} | {r["ratio"]:.2f} | '
                     f'{"-" if r["detections"] is None else r["detections"]} | {r["file_mib"]:.0f} | '
                     f'{r["export_s"]:.0f} |')
    return '\n'.join(lines) + f'\n\n({threads} threads each, median latency)\n'


def main(argv=None):
    args = parse_args(argv)
    if args.checkpoint and len(args.configs) > 1:
        raise SystemExit('--checkpoint goes with a single config')
    torch.set_num_threads(args.threads)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    records = []
    for config in args.configs:
        records += benchmark(config, args.checkpoint, sizes, args.repeat, args.warmup,
                             args.threads)
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'benchmark_onnx.json'), 'w') as f:
        json.dump(records, f, indent=1)
    table = to_markdown(records, args.threads)
    with open(osp.join(args.out, 'benchmark_onnx.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
