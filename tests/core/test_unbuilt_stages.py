"""Stages after the last requested output are neither built nor loaded, in both backbones: fewer
weights, strict loading of whole-backbone checkpoints (earlier versions' too), a loading report
that names the skipped weights, and DistributedDataParallel without find_unused_parameters."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fastervit_dense import FasterViT, FastViT

TINY = dict(depths=[1, 1, 2, 1], num_heads=[2, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
            dim=16, in_dim=16, mlp_ratio=2., hat=[False, False, True, False], layer_scale=None,
            propagation=False, drop_path_rate=0.)


@pytest.mark.parametrize('build, stage_prefix', [
    (lambda **kw: FasterViT(TINY, **kw), 'levels'),
    (lambda **kw: FastViT('t8', **kw), 'stages'),
])
def test_an_int_out_indices_and_no_weights_after_the_last_output(build, stage_prefix, tmp_path):
    torch.manual_seed(0)
    full = build(out_indices=(0, 1, 2, 3), out_norm_cfg=None).eval()
    early = build(out_indices=1, out_norm_cfg=None).eval()  # an int, as for (1, )
    assert early.out_indices == (1, )
    stages = {k.split('.')[1] for k in early.state_dict() if k.startswith(stage_prefix + '.')}
    assert stages == {'0', '1'}
    if stage_prefix == 'levels':
        assert early.levels[1].downsample is None
    assert sum(p.numel() for p in early.parameters()) < 0.5 * sum(
        p.numel() for p in full.parameters())
    # A checkpoint of the whole backbone loads strictly, and the maps are the full model's.
    early.load_state_dict(full.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        (ours, ), theirs = early(x), full(x)
    torch.testing.assert_close(ours, theirs[1], rtol=0, atol=0)
    # The kit's loader reports what it skipped.
    path = tmp_path / 'full.pth'
    torch.save({'state_dict': full.state_dict()}, path)
    report = early.load_pretrained(str(path))
    assert report['skipped'] and all(k.startswith((f'{stage_prefix}.2.', f'{stage_prefix}.3.',
                                                   'levels.1.downsample.'))
                                     for k in report['skipped'] + report['unexpected'])
    assert not any(k.startswith(stage_prefix) for k in report['unexpected'])


DDP_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from fastervit_dense import FasterViT, FastViT

    dist.init_process_group('gloo')
    torch.manual_seed(0)
    tiny = dict(depths=[1, 1, 2, 1], num_heads=[2, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
                dim=16, in_dim=16, mlp_ratio=2., hat=[False, False, True, False],
                layer_scale=None, propagation=False, drop_path_rate=0.)
    for backbone in (FasterViT(tiny, out_indices=(0, 1)), FastViT('t8', out_indices=(0, 1, 2))):
        model = DistributedDataParallel(backbone)  # find_unused_parameters left False
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(3):
            x = torch.randn(2, 3, 64, 96) + dist.get_rank()
            loss = sum(out.square().mean() for out in model(x))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f'rank {dist.get_rank()} {type(backbone).__name__} trained 3 steps', flush=True)
    dist.destroy_process_group()
''')


@pytest.mark.distributed
def test_distributed_data_parallel_trains_without_find_unused_parameters(tmp_path):
    script = tmp_path / 'ddp.py'
    script.write_text(DDP_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS='1',  # this checkout's kit, whatever is installed
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                             '--nproc_per_node=2', str(script)], capture_output=True, text=True,
                            env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for rank in (0, 1):
        for name in ('FasterViT', 'FastViT'):
            assert f'rank {rank} {name} trained 3 steps' in output
