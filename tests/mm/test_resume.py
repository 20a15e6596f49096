"""Interrupted training loses nothing: a run killed after a checkpoint and resumed with --resume
continues with exactly the losses of a run that was never interrupted (CPU, fixed seed,
deterministic), with drop path and random augmentation on."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.training


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEG = os.path.join(ROOT, 'configs', 'demo', 'fpn_fastervit-0_synthetic.py')


def options(root, iters):
    data_root = f'{root}/ade/'
    return ['--cfg-options', *[f'{loader}.dataset.data_root={data_root}'
                               for loader in ('train_dataloader', 'val_dataloader',
                                              'test_dataloader')],
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
            'default_hooks.checkpoint.interval=3', 'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=1',
            'model.backbone.drop_path_rate=0.3', 'randomness.seed=7',
            'randomness.deterministic=True']


def losses(work_dir):
    found = {}
    for path in sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json')):
        for line in open(path):
            record = json.loads(line)
            if 'loss' in record:
                found[record['step']] = record['loss']
    return found


def train(work_dir, root, *extra, processes=1):
    """Starts tools/train.py, under torchrun when ``processes`` > 1; its output goes to a file (an
    unread pipe could block it)."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ['-m', 'torch.distributed.run', f'--nproc_per_node={processes}',
                     '--master_port=29541']
        extra = ('--launcher', 'pytorch', *extra)
    command = [*launcher, 'tools/train.py', SEG, '--work-dir', str(work_dir), *extra,
               *options(root, 6)]
    os.makedirs(work_dir, exist_ok=True)
    log = open(os.path.join(work_dir, 'stdout.log'), 'a')
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS='1'))
    process.log_path = log.name
    return process


def finish(process):
    process.wait(timeout=900)
    output = open(process.log_path).read()
    assert process.returncode == 0, output[-3000:]
    return output


def train_here(script_command, work_dir, root, *extra):
    """tools/train.py run to its end in this process, on one thread as the started runs (whose
    losses it is compared with) have: saves the interpreter's imports."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = script_command('tools/train.py', SEG, '--work-dir', work_dir, *extra,
                                *options(root, 6), env=dict(OMP_NUM_THREADS='1'))
    finally:
        torch.set_num_threads(before)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def descendants(pid):
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so a
    process-group kill would miss them)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = open(f'/proc/{entry}/stat').read()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(')', 1)[1].split()[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found


def kill_after_checkpoint(process, work_dir, name='iter_3.pth'):
    """Kills the run, every process of it at once as a crash would, once ``name`` is completely
    written."""
    marker = work_dir / 'last_checkpoint'  # written once the checkpoint is complete
    deadline = time.time() + 600
    while not (marker.exists() and marker.read_text().strip().endswith(name)) \
            and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    for pid in [process.pid, *descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    assert (work_dir / name).exists(), open(process.log_path).read()[-3000:]


@pytest.mark.subprocess
def test_killed_run_resumes_with_identical_losses(tiny_data, tmp_path, script_command):
    """The run that is killed is started as a user starts it; the whole run, the resumed one and
    the control run in this process."""
    train_here(script_command, tmp_path / 'whole', tiny_data)
    reference = losses(tmp_path / 'whole')
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]

    interrupted = train(tmp_path / 'interrupted', tiny_data)
    checkpoint = tmp_path / 'interrupted' / 'iter_3.pth'
    kill_after_checkpoint(interrupted, tmp_path / 'interrupted')
    assert not (tmp_path / 'interrupted' / 'iter_6.pth').exists()
    import shutil
    saved = tmp_path / 'iter_3_copy.pth'  # the resumed run keeps only its newest checkpoint
    shutil.copy(checkpoint, saved)

    output = train_here(script_command, tmp_path / 'interrupted', tiny_data, '--resume',
                        checkpoint)
    assert 'Advance dataloader 3 steps' in output
    after = losses(tmp_path / 'interrupted')
    for step in (4, 5, 6):
        assert after[step] == reference[step], (step, after[step], reference[step])

    # Control: the same checkpoint without the saved generator states resumes differently (drop
    # path draws other masks), so the equality above is the hook's doing.
    import torch
    stripped = tmp_path / 'no_rng_states.pth'
    state = torch.load(saved, weights_only=True)
    del state['rng_states']
    torch.save(state, stripped)
    train_here(script_command, tmp_path / 'control', tiny_data, '--resume', stripped)
    assert losses(tmp_path / 'control')[4] != reference[4]


@pytest.mark.subprocess
@pytest.mark.distributed
def test_killed_torchrun_run_resumes_with_identical_losses(tiny_data, tmp_path):
    """Two processes (torchrun, gloo) with a different seed per process: only the main process
    writes checkpoints, so each process's generator states must reach it before it saves."""
    seeds = ('randomness.diff_rank_seed=True',)
    finish(train(tmp_path / 'whole', tiny_data, '--cfg-options', *seeds, processes=2))
    reference = losses(tmp_path / 'whole')
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]

    interrupted = train(tmp_path / 'interrupted', tiny_data, '--cfg-options', *seeds, processes=2)
    checkpoint = tmp_path / 'interrupted' / 'iter_3.pth'
    kill_after_checkpoint(interrupted, tmp_path / 'interrupted')
    assert not (tmp_path / 'interrupted' / 'iter_6.pth').exists()
    import torch
    saved = torch.load(checkpoint, weights_only=True)['rng_states']
    assert len(saved['ranks']) == 2
    # The processes' states differ, so restoring the main one's everywhere would not do.
    assert not torch.equal(saved['ranks'][0]['torch'], saved['ranks'][1]['torch'])

    output = finish(train(tmp_path / 'interrupted', tiny_data, '--resume', str(checkpoint),
                          '--cfg-options', *seeds, processes=2))
    assert 'Advance dataloader 3 steps' in output
    after = losses(tmp_path / 'interrupted')
    for step in (4, 5, 6):
        assert after[step] == reference[step], (step, after[step], reference[step])
