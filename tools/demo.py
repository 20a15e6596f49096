"""``make demo``: the kit's main job, end to end, on generated data and a CPU.

1. Writes the synthetic shape datasets under ``data/synthetic`` (once; deterministic).
2. Trains Mask R-CNN with FastViT-T8 (instances) and Semantic FPN with FasterViT-0 (semantic
   segmentation), from ImageNet weights when they are under ``checkpoints/``, else from scratch.
3. Evaluates both on the validation split (COCO box/mask mAP, mIoU), draws predictions next to the
   ground truth as PNGs under ``work_dirs/demo/``, writes ``work_dirs/demo/metrics.json`` and prints
   a summary.

The console shows one line per phase, a progress bar (loss, ETA) while training and evaluating,
and the summary; mmengine's full logs (config, hooks, every logged iteration, warnings) go to
``work_dirs/demo/logs/``. An error still reaches the console in full.

    python tools/demo.py [--seed 0] [--work-dir work_dirs/demo] [--det-iters N] [--seg-iters N]
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py')
SEG_CONFIG = osp.join(ROOT, 'configs', 'demo', 'fpn_fastervit-0_synthetic.py')
#: ImageNet files each demo model starts from when present (as published, or converted).
DET_CHECKPOINTS = ('checkpoints/fastvit_t8.pth.tar', 'checkpoints/fastvit_t8.pth',
                   'checkpoints/fastvit_t8.safetensors')
SEG_CHECKPOINTS = ('checkpoints/fastervit_0_224_1k.pth.tar', 'checkpoints/fastervit_0_224_1k.pth')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/synthetic')
    parser.add_argument('--det-iters', type=int, default=None, help='default: the config\'s')
    parser.add_argument('--seg-iters', type=int, default=None, help='default: the config\'s')
    parser.add_argument('--num-train', type=int, default=120)
    parser.add_argument('--num-val', type=int, default=30)
    parser.add_argument('--num-drawings', type=int, default=4)
    parser.add_argument('--det-weights', default=None,
                        help='ImageNet weights of the detector\'s FastViT-T8: a path, URL, hf-hub id '
                        'or "published" (its published weights); default: a file under checkpoints/ '
                        'if there is one, else random initialisation')
    parser.add_argument('--seg-weights', default=None,
                        help='the same for the segmentor\'s FasterViT-0')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of both trainings (the data stay the same)')
    parser.add_argument('--seg-amp', choices=('auto', 'on', 'off'), default='auto',
                        help='mixed-precision training of the segmentor (tools/train.py --amp): '
                        'auto = on where no GPU is used and the CPU has AMX, which cuts its '
                        'training time by about a third there; with AVX512-BF16 alone bfloat16 '
                        'trained it slower than float32, so auto keeps float32 there')
    parser.add_argument('--score-thr', type=float, default=None,
                        help='detections drawn in the pictures: score >= this; default: the '
                        'threshold of best F1 (IoU 0.5) on the validation split')
    return parser.parse_args(argv)


class Console:
    """The demo's console: numbered phase lines and progress bars on the terminal; everything
    else (mmengine's logging, Python warnings) in ``logs/`` under the work dir."""

    def __init__(self, work_dir: str, phases: int):
        self.log_dir = osp.join(work_dir, 'logs')
        os.makedirs(self.log_dir, exist_ok=True)
        self.phases, self.phase = phases, 0
        self.log_file = osp.join(self.log_dir, 'console.log')
        self.stream = open(self.log_file, 'a', buffering=1)
        self.terminal = sys.stdout
        warnings.showwarning = self._warning

    def _warning(self, message, category, filename, lineno, file=None, line=None):
        self.stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    def step(self, text: str):
        self.phase += 1
        print(f'demo [{self.phase}/{self.phases}] {text}', file=self.terminal, flush=True)

    def say(self, text: str):
        print(f'      {text}', file=self.terminal, flush=True)

    @contextlib.contextmanager
    def quiet(self):
        """Prints (pycocotools') and mmengine's loggers created inside go to the log stream."""
        with contextlib.redirect_stdout(self.stream):
            yield


def progress_hook():
    """An mmengine hook drawing a progress bar (loss and ETA) over training and over testing."""
    from mmengine.hooks import Hook
    from tqdm import tqdm

    class ProgressHook(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.bar = None

        def _open(self, total, desc):
            self.bar = tqdm(total=total, desc=f'      {desc}', file=sys.stderr, leave=True,
                            dynamic_ncols=True, bar_format='{desc} {bar} {n_fmt}/{total_fmt} '
                            '[{elapsed}<{remaining}{postfix}]')

        def _close(self):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def before_train(self, runner):
            self._open(runner.max_iters - runner.iter, 'training  ')

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if outputs and 'loss' in outputs:
                self.bar.set_postfix_str(f'loss {float(outputs["loss"]):.3f}', refresh=False)
            self.bar.update(1)

        def after_train(self, runner):
            self._close()

        def before_test_epoch(self, runner):
            self._open(len(runner.test_dataloader), 'evaluating')

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.bar.update(1)

        def after_test_epoch(self, runner, metrics=None):
            self._close()

    return ProgressHook()


def ensure_data(root, num_train, num_val, console):
    from fastervit_dense.mm.synthetic import make_datasets
    marker = osp.join(root, f'.complete_{num_train}_{num_val}')
    if osp.exists(marker):
        console.step(f'data: ready under {root} ({num_train} train, {num_val} validation images '
                     'each)')
        return
    console.step(f'data: writing synthetic datasets under {root} ({num_train} train, {num_val} '
                 'validation images each)')
    make_datasets(root, num_train, num_val, seed=0)
    open(marker, 'w').close()


def first_existing(paths):
    return next((p for p in paths if osp.isfile(osp.join(ROOT, p)) or osp.isfile(p)), None)


def weights_source(given, local_files, backbone, arch):
    """The ImageNet weights a demo model starts from: ``given`` (a path, URL or hf-hub id, or
    ``'published'``), else the first of ``local_files`` that exists, else None."""
    if given == 'published':
        return backbone.published_weights(arch)
    return given or first_existing(local_files)


def segmentor_amp(choice):
    """Whether the segmentor trains in mixed precision (``--seg-amp``). ``auto``: on a CPU with
    AMX only. With AVX512-BF16 alone (AMX switched off by ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``)
    a bfloat16 step took 1.18 s against 0.82 s in float32, and without either bfloat16 is
    emulated. The detector trains in float32: bfloat16 over its backbone and neck did not shorten
    its training."""
    if choice != 'auto':
        return choice == 'on'
    from fastervit_dense.mm.engine.optimizers import bfloat16_instructions
    from fastervit_dense.mm.runner import amp_dtype
    return amp_dtype() == 'bfloat16' and bfloat16_instructions() == 'AMX'


def machine_description():
    """What the demo's figures depend on besides the seed: the CPU (float rounding differs between
    processors and instruction sets), where bfloat16 runs, caps on the instruction sets, threads."""
    import torch

    from fastervit_dense.mm.engine.optimizers import bfloat16_instructions
    from fastervit_dense.utils.benchmark import cpu_model, instruction_set_caps
    return {'cpu': cpu_model(), 'bfloat16_instructions': bfloat16_instructions(),
            'instruction_set_caps': instruction_set_caps(), 'threads': torch.get_num_threads(),
            'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def configure(path, work_dir, data_root, iters, checkpoint, kind, seed, amp=False):
    from fastervit_dense.mm.runner import load_config, use_amp
    cfg = load_config(path, work_dir=work_dir)
    if amp:
        cfg = use_amp(cfg)
    cfg.randomness = dict(seed=seed)
    sub = 'coco/' if kind == 'detection' else 'ade/'
    root = osp.join(data_root, sub)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    if kind == 'detection':
        cfg.val_evaluator.ann_file = osp.join(root, 'annotations/instances_val.json')
        cfg.test_evaluator = cfg.val_evaluator
    if iters is not None:
        cfg.train_cfg.max_iters = iters
        for scheduler in cfg.param_scheduler:  # the same schedule, cut to the shorter run
            scheduler.end = min(scheduler.end, iters)
            scheduler.begin = min(scheduler.begin, scheduler.end - 1)
            if 'T_max' in scheduler:
                scheduler.T_max = iters
        cfg.default_hooks.checkpoint.interval = iters
    # Evaluated once, after training, by runner.test() (mmengine would also validate at the last
    # iteration whatever val_interval says).
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if checkpoint:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    return cfg


PICTURE_WIDTH = 1000  # the side-by-side pictures are scaled to at least this many pixels


def legend(width, names, colors, note):
    """A white strip: a swatch and the name of each class, then ``note``."""
    import cv2
    import numpy as np
    strip = np.full((44, width, 3), 255, np.uint8)
    x = 12
    for name, color in zip(names, colors):
        cv2.rectangle(strip, (x, 12), (x + 20, 32), tuple(int(c) for c in color), -1)
        cv2.putText(strip, name, (x + 28, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
        x += 40 + 12 * len(name)
    cv2.putText(strip, note, (x + 8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (80, 80, 80), 1,
                cv2.LINE_AA)
    return strip


def titled(panel, title):
    import cv2
    import numpy as np
    bar = np.full((30, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (10, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel])


def draw(runner, out_dir, prefix, count, score_thr):
    """Ground truth beside prediction for the first ``count`` validation images, scaled to at
    least :data:`PICTURE_WIDTH` pixels, with a legend; detections with score >= ``score_thr``."""
    import cv2
    import mmcv
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    dataset = runner.test_dataloader.dataset
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    names, colors = dataset.metainfo['classes'], dataset.metainfo['palette']
    detection = prefix == 'detection'
    note = f'prediction: score >= {score_thr:.2f}' if detection else ''
    model = runner.model
    model.eval()
    paths = []
    for index in range(min(count, len(dataset))):
        batch = pseudo_collate([dataset[index]])
        with torch.no_grad():
            sample = model.test_step(batch)[0]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        panels = []
        for title, gt in (('ground truth', True), ('prediction', False)):
            visualizer.add_datasample(f'{prefix}_{index}', image, sample, draw_gt=gt,
                                      draw_pred=not gt, show=False,
                                      **({'pred_score_thr': score_thr} if detection else {}))
            panel = visualizer.get_image()
            scale = max(1.0, PICTURE_WIDTH / 2 / panel.shape[1])
            panel = cv2.resize(panel, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            panels.append(titled(panel, title))
        picture = np.concatenate([panels[0], np.full((panels[0].shape[0], 8, 3), 255, np.uint8),
                                  panels[1]], 1)
        shown = [n for n in names if n != 'background'] if detection else names
        shown_colors = [c for n, c in zip(names, colors) if n in shown]
        picture = np.concatenate([picture, legend(picture.shape[1], shown, shown_colors, note)])
        out_file = osp.join(out_dir, f'{prefix}_{index:02d}.png')
        mmcv.imwrite(picture[:, :, ::-1], out_file)
        paths.append(out_file)
    return paths


def prediction_collector():
    """An mmengine hook that keeps, as the test loop runs, each image's detections and ground
    truth as arrays: the drawing threshold is chosen from them (``best_f1_threshold``) without a
    second pass over the validation split."""
    from mmengine.hooks import Hook

    class PredictionCollector(Hook):
        def __init__(self):
            self.predictions, self.truths = [], []

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            from mmdet.structures.bbox import get_box_tensor
            for sample in outputs or []:
                found, truth = sample.pred_instances, sample.gt_instances  # crowds: apart
                self.predictions.append((found.bboxes.numpy(), found.scores.numpy(),
                                         found.labels.numpy()))
                self.truths.append((get_box_tensor(truth.bboxes).numpy(), truth.labels.numpy()))

    return PredictionCollector()


@contextlib.contextmanager
def timed(seconds, key):
    """Adds the seconds the block takes to ``seconds[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start


def run(cfg, out_dir, prefix, count, score_thr, console, name):
    """Trains, evaluates and draws; returns the metrics, the pictures, the log file, for a
    detector the drawing threshold (``score_thr``, or chosen by best F1 from the evaluation's
    predictions: see :func:`prediction_collector`), and the seconds each of the three took
    (building the runner counts as training)."""
    from fastervit_dense.mm.runner import build_runner
    seconds = {}
    with console.quiet():
        with timed(seconds, 'training'):
            runner = build_runner(cfg)
            runner.register_hook(progress_hook())
            log_file = osp.join(runner.log_dir, runner.timestamp + '.log')
            console.step(f'{name}: training {runner.max_iters} iteration'
                         f"{'s' if runner.max_iters != 1 else ''} (log: {log_file})")
            runner.train()
        console.step(f'{name}: evaluating on {len(runner.test_dataloader.dataset)} validation '
                     'images')
        with timed(seconds, 'evaluation'):
            collector = prediction_collector() if prefix == 'detection' else None
            if collector is not None:
                runner.register_hook(collector)
            metrics = runner.test()
            chosen = None
            if collector is not None:
                from fastervit_dense.mm.visualization import best_f1_threshold
                chosen = dict(score_thr=score_thr) if score_thr is not None else \
                    best_f1_threshold(collector.predictions, collector.truths) or \
                    dict(score_thr=0.3)
                score_thr = chosen['score_thr']
        with timed(seconds, 'pictures'):
            drawings = draw(runner, out_dir, prefix, count, score_thr)
    return metrics, drawings, log_file, chosen, seconds


def time_breakdown(total, data, detection, segmentation):
    """Where the demo's ``total`` seconds went, rounded to a tenth: {'start': the imports and
    whatever no phase below counts, 'data': writing (or finding) the datasets, 'detection':
    {phase: s}, 'segmentation': {phase: s}}."""
    spent = data + sum(detection.values()) + sum(segmentation.values())
    return {'start': round(max(0.0, total - spent), 1), 'data': round(data, 1),
            'detection': {k: round(v, 1) for k, v in detection.items()},
            'segmentation': {k: round(v, 1) for k, v in segmentation.items()}}


def per_class_iou(log_file, classes):
    """The per-class IoU table mmseg's IoUMetric writes to the log: {class: IoU}."""
    found = {}
    with open(log_file) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if len(cells) >= 2 and cells[0] in classes:
                try:
                    found[cells[0]] = float(cells[1])
                except ValueError:
                    continue
    return found


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    console = Console(args.work_dir, phases=6)
    import fastervit_dense.mm  # noqa: F401
    data_seconds = {}
    with console.quiet(), timed(data_seconds, 'data'):
        ensure_data(args.data_root, args.num_train, args.num_val, console)

    from fastervit_dense import FasterViT, FastViT
    det_checkpoint = weights_source(args.det_weights, DET_CHECKPOINTS, FastViT, 't8')
    seg_checkpoint = weights_source(args.seg_weights, SEG_CHECKPOINTS, FasterViT, '0')
    for name, found, paths, flag in (
            ('detector (FastViT-T8)', det_checkpoint, DET_CHECKPOINTS, '--det-weights'),
            ('segmentor (FasterViT-0)', seg_checkpoint, SEG_CHECKPOINTS, '--seg-weights')):
        console.say(f'{name}: ' + (f'starting from ImageNet weights {found}' if found else
                                   f'no ImageNet weights at {paths[0]} nor {flag}: training from '
                                   f'random initialisation, seed {args.seed}'))
    seg_amp = segmentor_amp(args.seg_amp)
    from fastervit_dense.mm.runner import amp_dtype
    seg_precision = f'{amp_dtype()} mixed precision' if seg_amp else 'float32'
    machine = machine_description()
    on = ''
    if seg_amp and amp_dtype() == 'bfloat16':
        on = (f' on {machine["bfloat16_instructions"]}' if machine['bfloat16_instructions'] else
              ' (emulated: this CPU has no bfloat16 instructions)')
    console.say(f'segmentor (FasterViT-0): trains in {seg_precision}{on}' +
                (' (--seg-amp off: float32)' if seg_amp else ''))

    det_cfg = configure(DET_CONFIG, osp.join(args.work_dir, 'detection'), args.data_root,
                        args.det_iters, det_checkpoint, 'detection', args.seed)
    det_metrics, det_drawings, det_log, drawn, det_seconds = run(
        det_cfg, args.work_dir, 'detection', args.num_drawings, args.score_thr, console,
        'Mask R-CNN + FastViT-T8')
    seg_cfg = configure(SEG_CONFIG, osp.join(args.work_dir, 'segmentation'), args.data_root,
                        args.seg_iters, seg_checkpoint, 'segmentation', args.seed, seg_amp)
    seg_metrics, seg_drawings, seg_log, _, seg_seconds = run(
        seg_cfg, args.work_dir, 'segmentation', args.num_drawings, None, console,
        'Semantic FPN + FasterViT-0')
    console.step(f'pictures: {len(det_drawings) + len(seg_drawings)} written to {args.work_dir}')
    logs = [det_log, seg_log, console.log_file]
    seg_classes = per_class_iou(seg_log, seg_cfg.metainfo['classes'])

    result = {
        'detection': {
            'backbone': 'FastViT-T8',
            'bbox_mAP': float(det_metrics['coco/bbox_mAP']),
            'bbox_mAP_50': float(det_metrics['coco/bbox_mAP_50']),
            'segm_mAP': float(det_metrics['coco/segm_mAP']),
            'drawn_from_score': drawn['score_thr'],
            'best_f1': drawn.get('f1'),
        },
        'segmentation': {'backbone': 'FasterViT-0', 'mIoU': float(seg_metrics['mIoU']),
                         'IoU': seg_classes, 'mixed_precision': seg_amp,
                         'precision': seg_precision},
        'machine': machine,
        'seed': args.seed,
        'pretrained': bool(det_checkpoint and seg_checkpoint),
        'pretrained_detail': {'detection': det_checkpoint, 'segmentation': seg_checkpoint},
        'seconds': round(time.perf_counter() - start, 1),
    }
    result['seconds_by_phase'] = time_breakdown(result['seconds'], data_seconds['data'],
                                                det_seconds, seg_seconds)
    metrics_path = osp.join(args.work_dir, 'metrics.json')
    tmp = metrics_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, metrics_path)

    det, seg = result['detection'], result['segmentation']
    start_from = 'from ImageNet weights' if result['pretrained'] else \
        f'from random initialisation, seed {args.seed}'
    per_class = ', '.join(f'{name} {iou:.1f}' for name, iou in seg_classes.items())
    print('\n' + '=' * 78)
    print(f'demo finished in {result["seconds"]:.0f} s ({start_from})')
    print(f'  instances, Mask R-CNN + FastViT-T8:   box mAP {det["bbox_mAP"]:.3f}, '
          f'box mAP@0.5 {det["bbox_mAP_50"]:.3f}, mask mAP {det["segm_mAP"]:.3f}')
    print(f'  semantic, Semantic FPN + FasterViT-0: mIoU {seg["mIoU"]:.2f}% (IoU: {per_class}; '
          f'{seg_precision})')
    caps = ', '.join(f'{k}={v}' for k, v in machine['instruction_set_caps'].items())
    print(f'  machine:  {machine["cpu"]}, {machine["threads"]} threads; bfloat16 instructions: '
          f'{machine["bfloat16_instructions"] or "none"}' + (f' (capped: {caps})' if caps else ''))
    phases = result['seconds_by_phase']
    print(f'  time:     start {phases["start"]:.0f} s, data {phases["data"]:.0f} s')
    for model, kind in (('detector', 'detection'), ('segmentor', 'segmentation')):
        print(f'            {model}: ' +
              ', '.join(f'{k} {v:.0f} s' for k, v in phases[kind].items()))
    print(f'  metrics:  {metrics_path}')
    print(f'  pictures: {", ".join(det_drawings + seg_drawings)}')
    print(f'            detections drawn from score {drawn["score_thr"]:.2f}' + (
        f', the threshold of best F1 ({drawn["f1"]:.3f}, IoU 0.5) on the validation split '
        '(--score-thr sets another)' if 'f1' in drawn else ' (--score-thr)'))
    print(f'  logs:     {", ".join(logs)}')
    print('=' * 78)
    return result


if __name__ == '__main__':
    main()
