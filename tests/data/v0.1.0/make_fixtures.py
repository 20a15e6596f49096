"""Writes the files that ``tests/mm/test_compatibility.py`` loads with the current code: what the kit's
version 0.1.0 (commit e891a46) wrote. Run once, against that version:

    git worktree add /tmp/v010 e891a46
    PYTHONPATH=/tmp/v010 .venv/bin/python tests/data/v0.1.0/make_fixtures.py DATA_ROOT

* ``keys.json``: state-dict keys and shapes of backbones of several presets;
* ``converted.json``: keys, shapes and value sums of the converter's output for a fixed random
  official FasterViT-0 checkpoint and a fixed random timm FastViT-T8, plus their ``meta``;
* ``iter_2.pth``: a training checkpoint of ``fpn_fastervit-tiny_synthetic.py`` written by
  ``tools/train.py`` (2 iterations on generated data), and ``outputs.pth``: that model's logits for
  a fixed input.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = osp.dirname(osp.abspath(__file__))


def main(data_root):
    import fastervit_dense
    from fastervit_dense import FasterViT, FastViT
    assert fastervit_dense.__file__.startswith(os.environ['PYTHONPATH']), fastervit_dense.__file__
    presets = {'fastervit-0': lambda: FasterViT('0'), 'fastervit-3': lambda: FasterViT('3'),
               'fastervit-4-21k-224': lambda: FasterViT('4-21k-224'),
               'fastvit-t8': lambda: FastViT('t8'), 'fastvit-sa12': lambda: FastViT('sa12'),
               'fastvit-sa12-deploy': lambda: FastViT('sa12', deploy=True),
               'fastvit-mci3': lambda: FastViT('mci3')}
    keys = {}
    for name, build in presets.items():
        keys[name] = {k: list(v.shape) for k, v in build().state_dict().items()}
    json.dump(keys, open(osp.join(HERE, 'keys.json'), 'w'), indent=0, sort_keys=True)

    sys.path.insert(0, osp.join(os.environ['PYTHONPATH'], 'tests'))
    from reference import official_fastervit, randomize_, save_official_checkpoint, timm_fastvit
    folder = tempfile.mkdtemp()
    converted = {}
    sources = {
        'fastervit': save_official_checkpoint(randomize_(official_fastervit('0', (224, 224)), seed=1),
                                              osp.join(folder, 'fastervit_0_224_1k.pth.tar')),
        'fastvit': osp.join(folder, 'fastvit_t8.pth')}
    torch.save(timm_fastvit('t8', seed=2).state_dict(), sources['fastvit'])
    for kind, src in sources.items():
        dst = osp.join(folder, f'{kind}_converted.pth')
        subprocess.run([sys.executable, osp.join(os.environ['PYTHONPATH'], 'tools', 'model_converters',
                                                 f'{kind}2mm.py'), src, dst], check=True)
        saved = torch.load(dst, weights_only=True)
        converted[kind] = dict(
            meta=saved['meta'],
            tensors={k: [list(v.shape), float(v.double().sum())] for k, v in saved['state_dict'].items()})
    json.dump(converted, open(osp.join(HERE, 'converted.json'), 'w'), indent=0, sort_keys=True)
    train(data_root)


def train(data_root):
    folder = tempfile.mkdtemp()
    work_dir = osp.join(folder, 'work')
    # The config, placed in the old version's tree so that its base is that version's demo config.
    config = osp.join(os.environ['PYTHONPATH'], 'tests', 'data', 'v0.1.0', 'fpn_fastervit-tiny_synthetic.py')
    os.makedirs(osp.dirname(config), exist_ok=True)
    shutil.copy(osp.join(HERE, 'fpn_fastervit-tiny_synthetic.py'), config)
    options = [f'{loader}.dataset.data_root={data_root}/ade/'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    subprocess.run([sys.executable, osp.join(os.environ['PYTHONPATH'], 'tools', 'train.py'), config,
                    '--work-dir', work_dir, '--cfg-options', *options, 'train_cfg.max_iters=2',
                    'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=2',
                    'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                    'train_dataloader.persistent_workers=False'], check=True, cwd=HERE)
    shutil.copy(osp.join(work_dir, 'iter_2.pth'), osp.join(HERE, 'iter_2.pth'))

    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, osp.join(HERE, 'iter_2.pth'), strict=True)
    x = torch.randn(1, 3, 70, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()._forward(x)
    torch.save({'input': x, 'logits': logits}, osp.join(HERE, 'outputs.pth'))
    print('written to', HERE)


if __name__ == '__main__':
    main(sys.argv[1])
