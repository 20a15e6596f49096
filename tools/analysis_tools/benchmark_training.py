"""Training-step cost of detectors with FasterViT-0 next to the same detectors with Swin-T, and the
memory that gradient checkpointing (``with_cp``) saves.

Each case runs in a fresh process (so peak memory is that case's alone): it builds the model, runs
one warm-up step, then times ``--repeat`` training steps (forward, backward, optimizer step) on
generated images and reports the median and the process's peak resident memory (CPU) or CUDA's
peak allocation.

On CPU the with_cp comparison runs under four settings of the measuring process: glibc's defaults,
which keep much of the memory freed during the backward pass in fragments (so the peak resident
memory also counts freed tensors); the same with the gradient buffers allocated before the backward
pass (as in later steps when the optimizer zeroes rather than frees them), which leaves fewer
fragments; ``MALLOC_MMAP_THRESHOLD_=1048576``, which returns every tensor's memory when it is freed,
so the peak is what the step holds at once, as CUDA's peak allocation measures it; and a padded heap
that keeps freed memory for reuse (``MALLOC_TOP_PAD_``, fixed mmap threshold), which spares the
kernel's zeroing of fresh pages at the cost of memory. Each record also gives the training memory:
the peak above the resident memory of the imported libraries (weights, input, activations and
gradients; what CUDA's peak allocation counts, where libraries do not take device memory).

    python tools/analysis_tools/benchmark_training.py [--size 512x512] [--batch-size 2]
        [--cp-size 1024x1024] [--repeat 2] [--out work_dirs/benchmarks]
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
import warnings

import torch

from fastervit_dense.utils.benchmark import parse_size, peak_mib, process_memory_mib

warnings.filterwarnings('ignore')
#: The repository root: the detector configs are read from its configs/ folder.
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SWIN_T = dict(_delete_=True, type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
              num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.2, out_indices=(0, 1, 2, 3),
              init_cfg=None)
CASES = {
    'mask-rcnn/fastervit-0': ('configs/fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py', None, {}),
    'mask-rcnn/swin-t': ('configs/fastervit/mask-rcnn_fastervit-0_fpn_1x_coco.py', SWIN_T,
                         dict(neck=dict(in_channels=[96, 192, 384, 768]))),
    'dino/fastervit-0': ('configs/fastervit/dino-4scale_fastervit-0_8xb2-12e_coco.py', None, {}),
    'dino/swin-t': ('configs/fastervit/dino-4scale_fastervit-0_8xb2-12e_coco.py',
                    dict(SWIN_T, out_indices=(1, 2, 3)), dict(neck=dict(in_channels=[192, 384, 768]))),
}


def detector_case(name, size, batch_size, repeat, device):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from fastervit_dense.mm.runner import prepare_scope
    from fastervit_dense.mm.batches import det_batch
    config, backbone, extra = CASES[name]
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    if backbone is not None:
        cfg.merge_from_dict(dict(model=dict(backbone=backbone, **extra)))
    prepare_scope(cfg)
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = det_batch([(3, *size)] * batch_size, with_mask='mask' in name, num_classes=80)
    times = []
    for step in range(repeat + 1):
        start = time.perf_counter()
        model.train_step(copy.deepcopy(batch), optim_wrapper)
        if device == 'cuda':
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    return dict(case=name, size=f'{size[0]}x{size[1]}', batch_size=batch_size,
                step_s=statistics.median(times), peak_mib=peak_mib(device))


def current_mib(device):
    if device == 'cuda':
        return torch.cuda.memory_allocated() / 2**20
    return process_memory_mib('VmRSS')


#: Settings of the with_cp comparison on CPU: the environment of the measuring process (glibc
#: allocator settings) and whether the gradient buffers exist before the backward pass, as in every
#: step after the first when the optimizer zeroes gradients instead of freeing them
#: (``zero_grad(set_to_none=False)``). Gradients allocated during the backward pass land between
#: the blocks' recomputed activations and keep glibc from reusing the space they leave.
SETTINGS = {
    'glibc default': ({}, False),
    'glibc default, gradients allocated first': ({}, True),
    'glibc, freed memory returned': ({'MALLOC_MMAP_THRESHOLD_': '1048576'}, False),
    'glibc, freed memory kept': ({'MALLOC_TOP_PAD_': '268435456',
                                  'MALLOC_MMAP_THRESHOLD_': '33554432'}, False),
}


def checkpointing_name(with_cp, setting=None):
    return f'fastervit-0 backbone step, with_cp={with_cp}' + (f' ({setting})' if setting else '')


def checkpointing_case(with_cp, size, batch_size, device, setting=None):
    """Backbone training step (forward, backward) of FasterViT-0 at a large size."""
    from fastervit_dense import FasterViT
    libraries = current_mib(device)
    model = FasterViT('0', with_cp=with_cp).to(device).train()
    if setting and SETTINGS[setting][1]:
        for param in model.parameters():
            param.grad = torch.zeros_like(param)
    x = torch.randn(batch_size, 3, *size, device=device)
    start = time.perf_counter()
    sum(o.float().square().mean() for o in model(x)).backward()
    peak = peak_mib(device)
    return dict(case=checkpointing_name(with_cp, setting), size=f'{size[0]}x{size[1]}',
                batch_size=batch_size, step_s=time.perf_counter() - start, peak_mib=peak,
                training_mib=peak - libraries)


def worker(job, device):
    if job['kind'] == 'detector':
        record = detector_case(job['name'], tuple(job['size']), job['batch_size'], job['repeat'],
                               device)
    else:
        record = checkpointing_case(job['with_cp'], tuple(job['size']), job['batch_size'], device,
                                    job.get('setting'))
    print('RESULT ' + json.dumps(record))


def spawn(job, device):
    env = dict(os.environ, **SETTINGS.get(job.get('setting'), ({}, False))[0])
    result = subprocess.run([sys.executable, osp.abspath(__file__), '--worker', json.dumps(job),
                             '--device', device], capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
    if result.returncode != 0 or not lines:
        return dict(job, error=(result.stderr.strip().splitlines() or ['failed'])[-1][:200])
    return json.loads(lines[-1][len('RESULT '):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', default='512x512', help='detector training image size')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--cp-size', default='1024x1024', help='size for the with_cp comparison')
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--out', default='work_dirs/benchmarks')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker), args.device)

    try:
        size, cp_size = parse_size(args.size), parse_size(args.cp_size)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    jobs = [dict(kind='detector', name=name, size=size, batch_size=args.batch_size,
                 repeat=args.repeat) for name in CASES]
    settings = list(SETTINGS) if args.device == 'cpu' else [None]
    jobs += [dict(kind='checkpointing', with_cp=flag, size=cp_size, batch_size=args.batch_size,
                  setting=setting) for setting in settings for flag in (False, True)]
    records = []
    for i, job in enumerate(jobs, 1):
        label = job.get('name') or f'with_cp={job["with_cp"]}, {job["setting"] or args.device}'
        print(f'[{i}/{len(jobs)}] {label} ...', flush=True)
        records.append(spawn(job, args.device))
    by_case = {r.get('case'): r for r in records}
    ratios = {}
    for algo in ('mask-rcnn', 'dino'):
        ours, swin = by_case.get(f'{algo}/fastervit-0'), by_case.get(f'{algo}/swin-t')
        if ours and swin and 'step_s' in ours and 'step_s' in swin:
            ratios[f'{algo} step time, FasterViT-0 / Swin-T'] = ours['step_s'] / swin['step_s']
    for setting in settings:
        suffix = f' ({setting})' if setting else ''
        plain = by_case.get(checkpointing_name(False, setting))
        cp = by_case.get(checkpointing_name(True, setting))
        if plain and cp and 'peak_mib' in plain and 'peak_mib' in cp:
            ratios[f'peak memory, with_cp / without{suffix}'] = cp['peak_mib'] / plain['peak_mib']
            ratios[f'training memory (peak above the libraries), with_cp / without{suffix}'] = (
                cp['training_mib'] / plain['training_mib'])
            ratios[f'step time, with_cp / without{suffix}'] = cp['step_s'] / plain['step_s']
    lines = ['| case | size | batch | step s | peak MiB | training MiB |',
             '|---|---|---|---|---|---|']
    for r in records:
        if 'error' in r:
            lines.append(f'| {r.get("name", r.get("kind"))} | - | - | error: {r["error"]} | - | - |')
        else:
            training = r.get('training_mib')
            lines.append(f'| {r["case"]} | {r["size"]} | {r["batch_size"]} | {r["step_s"]:.2f} | '
                         f'{r["peak_mib"]:.0f} | {"-" if training is None else f"{training:.0f}"} |')
    lines += [''] + [f'- {k}: {v:.2f}' for k, v in ratios.items()]
    table = '\n'.join(lines) + '\n'
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'training.json'), 'w') as f:
        json.dump(dict(command=' '.join(sys.argv), records=records, ratios=ratios), f, indent=2)
    with open(osp.join(args.out, 'training.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
