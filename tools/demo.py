"""``make demo``: the kit's main job, end to end, on generated data and a CPU.

1. Writes the synthetic shape datasets under ``data/synthetic`` (once; deterministic).
2. Trains Mask R-CNN with FastViT-T8 (instances) and Semantic FPN with FasterViT-0 (semantic
   segmentation), from ImageNet weights when they are under ``checkpoints/``, else from scratch.
3. Evaluates both on the validation split (COCO box/mask mAP, mIoU), draws predictions next to the
   ground truth as PNGs under ``work_dirs/demo/``, writes ``work_dirs/demo/metrics.json`` and prints
   a summary.

    python tools/demo.py [--work-dir work_dirs/demo] [--det-iters N] [--seg-iters N]
"""
import argparse
import json
import os
import os.path as osp
import time

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
    return parser.parse_args(argv)


def ensure_data(root, num_train, num_val):
    from fastervit_dense.testing.synthetic import make_datasets
    marker = osp.join(root, f'.complete_{num_train}_{num_val}')
    if osp.exists(marker):
        print(f'demo: data ready under {root}')
        return
    print(f'demo: writing synthetic datasets under {root} ({num_train} train, {num_val} val each)')
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


def configure(path, work_dir, data_root, iters, checkpoint, kind):
    from fastervit_dense.mm.runner import load_config
    cfg = load_config(path, work_dir=work_dir)
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


def draw(runner, out_dir, prefix, count):
    """Predictions next to the ground truth for the first ``count`` validation images."""
    import mmcv
    import torch
    from mmengine.dataset import pseudo_collate
    dataset = runner.test_dataloader.dataset
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    model = runner.model
    model.eval()
    paths = []
    for index in range(min(count, len(dataset))):
        batch = pseudo_collate([dataset[index]])
        with torch.no_grad():
            sample = model.test_step(batch)[0]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        out_file = osp.join(out_dir, f'{prefix}_{index:02d}.png')
        visualizer.add_datasample(f'{prefix}_{index}', image, sample, draw_gt=True, draw_pred=True,
                                  show=False, out_file=out_file,
                                  **({'pred_score_thr': 0.3} if prefix == 'detection' else {}))
        paths.append(out_file)
    return paths


def run(cfg, out_dir, prefix, count):
    from fastervit_dense.mm.runner import build_runner
    runner = build_runner(cfg)
    runner.train()
    metrics = runner.test()
    drawings = draw(runner, out_dir, prefix, count)
    return metrics, drawings


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    import fastervit_dense.mm  # noqa: F401
    os.makedirs(args.work_dir, exist_ok=True)
    ensure_data(args.data_root, args.num_train, args.num_val)

    from fastervit_dense import FasterViT, FastViT
    det_checkpoint = weights_source(args.det_weights, DET_CHECKPOINTS, FastViT, 't8')
    seg_checkpoint = weights_source(args.seg_weights, SEG_CHECKPOINTS, FasterViT, '0')
    for name, found, paths, flag in (
            ('detector (FastViT-T8)', det_checkpoint, DET_CHECKPOINTS, '--det-weights'),
            ('segmentor (FasterViT-0)', seg_checkpoint, SEG_CHECKPOINTS, '--seg-weights')):
        print(f'demo: {name}: ' + (f'starting from ImageNet weights {found}' if found else
                                   f'no ImageNet weights at {paths[0]} nor {flag}: training from '
                                   'random initialisation'))

    det_cfg = configure(DET_CONFIG, osp.join(args.work_dir, 'detection'), args.data_root,
                        args.det_iters, det_checkpoint, 'detection')
    det_metrics, det_drawings = run(det_cfg, args.work_dir, 'detection', args.num_drawings)
    seg_cfg = configure(SEG_CONFIG, osp.join(args.work_dir, 'segmentation'), args.data_root,
                        args.seg_iters, seg_checkpoint, 'segmentation')
    seg_metrics, seg_drawings = run(seg_cfg, args.work_dir, 'segmentation', args.num_drawings)

    result = {
        'detection': {
            'backbone': 'FastViT-T8',
            'bbox_mAP': float(det_metrics['coco/bbox_mAP']),
            'bbox_mAP_50': float(det_metrics['coco/bbox_mAP_50']),
            'segm_mAP': float(det_metrics['coco/segm_mAP']),
        },
        'segmentation': {'backbone': 'FasterViT-0', 'mIoU': float(seg_metrics['mIoU'])},
        'pretrained': bool(det_checkpoint and seg_checkpoint),
        'pretrained_detail': {'detection': det_checkpoint, 'segmentation': seg_checkpoint},
        'seconds': round(time.time() - start, 1),
    }
    metrics_path = osp.join(args.work_dir, 'metrics.json')
    tmp = metrics_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, metrics_path)

    det, seg = result['detection'], result['segmentation']
    print('\n' + '=' * 72)
    print(f'demo finished in {result["seconds"]:.0f} s '
          f'({"from ImageNet weights" if result["pretrained"] else "from random initialisation"})')
    print(f'  instances, Mask R-CNN + FastViT-T8:   box mAP {det["bbox_mAP"]:.3f}, '
          f'box mAP@0.5 {det["bbox_mAP_50"]:.3f}, mask mAP {det["segm_mAP"]:.3f}')
    print(f'  semantic, Semantic FPN + FasterViT-0: mIoU {seg["mIoU"]:.2f}%')
    print(f'  metrics: {metrics_path}')
    print(f'  pictures (ground truth | prediction): {", ".join(det_drawings + seg_drawings)}')
    print('=' * 72)
    return result


if __name__ == '__main__':
    main()
