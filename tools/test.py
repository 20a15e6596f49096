"""Evaluates a checkpoint: mmdet's and mmseg's ``tools/test.py`` command line, with the framework
chosen from the config's ``default_scope``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from fastervit_dense.mm.dataset_check import checked_config
from fastervit_dense.mm.runner import (build_runner, load_config, release_process_group,
                                        run_tool, set_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation results')
    parser.add_argument('--out', help='dump predictions to a pickle file (mmdet) or folder (mmseg)')
    parser.add_argument('--show-dir', help='save drawn predictions (ground truth beside prediction) '
                        'in this folder under the work dir, each under its image\'s own path '
                        'below the dataset\'s image folder')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='with --show-dir: detections drawn have at least this score')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_local_rank(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg = checked_config(cfg, ('test_dataloader', ))  # before any model is built
    cfg.load_from = args.checkpoint
    if args.show_dir:
        if cfg.get('visualizer') is None:
            raise SystemExit('--show-dir needs a visualizer in the config')
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='DrawPredictionsHook', out_dir=args.show_dir, score_thr=args.score_thr)]
    if args.out:
        if cfg.default_scope == 'mmdet':
            cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
                cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
        else:
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
    runner = build_runner(cfg)
    try:
        runner.test()
    finally:
        release_process_group()


if __name__ == '__main__':
    run_tool(main)
