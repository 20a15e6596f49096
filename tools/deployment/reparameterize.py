"""Fuses the FastViT backbone of a trained detector or segmentor checkpoint for deployment.

    python tools/deployment/reparameterize.py CONFIG CHECKPOINT OUT

The fused checkpoint runs with the same config plus one change, ``model.backbone.deploy=True``:

    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True
    (or mmdet's / mmseg's own tools/test.py with the same --cfg-options)

Outputs agree with the unfused model to float rounding; the fused model is faster (fewer branches,
no BatchNorm) but cannot be trained further.
"""
import argparse
import os.path as osp
import sys

from fastervit_dense.checkpoint import CheckpointError, save_atomic
from fastervit_dense.hub import sha256_of
from fastervit_dense.mm.checkpoint import load_config_checkpoint
from fastervit_dense.mm.runner import build_model, load_config, run_tool


def reparameterize(config: str, checkpoint: str, out: str) -> int:
    from fastervit_dense import FastViT
    cfg = load_config(config)
    if cfg.model.backbone.get('type') != 'FastViT':
        raise CheckpointError(f'{config}: the backbone is {cfg.model.backbone.get("type")!r}; only '
                              'FastViT backbones have branches to fuse')
    if cfg.model.backbone.get('deploy'):
        raise CheckpointError(f'{config} already sets deploy=True: give the training config')
    model = build_model(cfg)
    weights = load_config_checkpoint(model, checkpoint, fused=False)
    fused = 0
    for module in model.modules():
        if isinstance(module, FastViT) and not module.deploy:
            module.switch_to_deploy()
            fused += 1
    meta = dict(weights.meta or {}, reparameterized_from=osp.basename(checkpoint),
                source_sha256=sha256_of(weights.path), deploy=True)
    save_atomic({'meta': meta, 'state_dict': model.state_dict()}, out)
    return fused


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the training config of the checkpoint')
    parser.add_argument('checkpoint', help='trained detector or segmentor checkpoint')
    parser.add_argument('out', help='fused checkpoint to write (atomically)')
    args = parser.parse_args(argv)
    try:
        fused = reparameterize(args.config, args.checkpoint, args.out)
    except (CheckpointError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(f'fused {fused} FastViT backbone into {args.out}; test it with '
          f'--cfg-options model.backbone.deploy=True')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
