"""The kit's tools end to end on a tiny generated dataset: train, evaluate a saved checkpoint,
distributed training with torchrun (gloo, CPU), FLOPs, and the shortened demo.

The train, test and reparameterize tools run in this process where a test checks what they do
(tests/conftest.py ``script_output``); each is started in a new interpreter, as a user starts it,
by another test (tests/mm/test_resume.py, test_compatibility.py and
``test_reparameterize_refuses_a_fasterVit_config``)."""
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DET = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py')
SEG = os.path.join(ROOT, 'configs', 'demo', 'fpn_fastervit-0_synthetic.py')


def data_options(root, kind):
    if kind == 'det':
        data_root = f'{root}/coco/'
        return [f'train_dataloader.dataset.data_root={data_root}',
                f'val_dataloader.dataset.data_root={data_root}',
                f'test_dataloader.dataset.data_root={data_root}',
                f'val_evaluator.ann_file={data_root}annotations/instances_val.json',
                f'test_evaluator.ann_file={data_root}annotations/instances_val.json']
    data_root = f'{root}/ade/'
    return [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def short(iters):
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.mark.training
@pytest.mark.parametrize('kind,config,metric', [('det', DET, 'coco/bbox_mAP'),
                                                ('seg', SEG, 'mIoU')])
def test_train_saves_a_checkpoint_that_test_evaluates(tiny_data, tmp_path, kind, config, metric,
                                                      script_output):
    work_dir = tmp_path / 'work'
    script_output('tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
                  *data_options(tiny_data, kind), *short(3))
    checkpoint = work_dir / 'iter_3.pth'
    assert checkpoint.exists()
    # Beyond torch's defaults, the checkpoint holds only the data types the kit allowlists (never
    # getattr, which mmengine's HistoryBuffer would otherwise need).
    from fastervit_dense.checkpoint import SAFE_GLOBALS
    from fastervit_dense.mm.checkpoint import mmengine_safe_globals
    from fastervit_dense.testing.reference import non_torch_globals
    allowed = {f'{g.__module__}.{g.__qualname__}' for g in SAFE_GLOBALS + mmengine_safe_globals()}
    found = non_torch_globals(checkpoint)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in found
    assert 'builtins.getattr' not in found and found <= allowed, found - allowed
    output = script_output('tools/test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
                           '--cfg-options', *data_options(tiny_data, kind), *short(3))
    assert metric in output
    if kind == 'det':
        assert 'segm_mAP_copypaste' in output


@pytest.mark.distributed
@pytest.mark.training
@pytest.mark.subprocess
def test_torchrun_two_processes_train_and_save(tiny_data, tmp_path, script_output):
    work_dir = tmp_path / 'dist'
    output = script_output('-m', 'torch.distributed.run', '--nproc_per_node=2',
                           '--master_port=29533', 'tools/train.py', SEG, '--launcher', 'pytorch',
                           '--work-dir', work_dir, '--cfg-options',
                           *data_options(tiny_data, 'seg'), *short(2),
                           env={'OMP_NUM_THREADS': '1'}, new_interpreter=True)
    assert 'Distributed training is not used' not in output
    assert (work_dir / 'iter_2.pth').exists()
    assert "'backend': 'gloo'" in output or 'backend: gloo' in output or 'gloo' in output


@pytest.mark.subprocess
def test_get_flops_reports_parameters_and_flops(script_output):
    output = script_output('tools/analysis_tools/get_flops.py', SEG, '--shape', '256', '320',
                           new_interpreter=True)
    assert 'Input shape: (3, 256, 320)' in output
    assert 'Flops:' in output and 'Params:' in output


@pytest.mark.training
def test_reparameterize_tool_fuses_a_trained_detector(tiny_data, tmp_path, script_output):
    """A detector checkpoint saved by training becomes a fused one that the test tool runs with
    the one-line deploy change, with the same predictions."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    work_dir = tmp_path / 'work'
    output = script_output('tools/train.py', DET, '--work-dir', work_dir, '--amp',
                           '--cfg-options', *data_options(tiny_data, 'det'), *short(2))
    # --amp without a GPU: bfloat16 over the backbone and neck (the heads call mmcv's float32
    # CPU operators, which a whole-model autocast breaks)
    assert "type='CPUAmpOptimWrapper'" in output and "autocast_modules=[" in output
    fused_path = tmp_path / 'fused.pth'
    output = script_output('tools/deployment/reparameterize.py', DET, work_dir / 'iter_2.pth',
                           fused_path)
    assert 'model.backbone.deploy=True' in output

    import fastervit_dense.mm  # noqa: F401
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    init_default_scope('mmdet')
    # the training checkpoint's metadata (classes, palette) stays for mmdet's inference tools
    trained, fused = (torch.load(p, weights_only=True)['meta'] for p in (work_dir / 'iter_2.pth',
                                                                         fused_path))
    assert fused['dataset_meta'] == trained['dataset_meta'] and fused['deploy'] is True
    cfg = Config.fromfile(DET)
    models = []
    for deploy, path in ((False, work_dir / 'iter_2.pth'), (True, fused_path)):
        cfg.model.backbone.deploy = deploy
        model = MODELS.build(cfg.model)
        load_checkpoint(model, str(path), strict=True)
        models.append(model.eval())
    assert any('reparam_conv' in k for k in models[1].state_dict())
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        for a, b in zip(models[0].extract_feat(x), models[1].extract_feat(x)):
            assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    output = script_output('tools/test.py', DET, fused_path, '--work-dir', tmp_path / 'test',
                           '--cfg-options', 'model.backbone.deploy=True',
                           *data_options(tiny_data, 'det'), *short(2))
    assert 'coco/bbox_mAP' in output


@pytest.mark.subprocess
def test_reparameterize_refuses_a_fasterVit_config(tmp_path, script_command):
    result = script_command('tools/deployment/reparameterize.py', SEG, tmp_path / 'missing.pth',
                            tmp_path / 'out.pth', new_interpreter=True)
    assert result.returncode == 1
    assert "the backbone is 'FasterViT'; only FastViT backbones have branches to fuse" in result.stderr
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.subprocess
def test_backbone_benchmark_writes_ratios_flops_and_memory(tmp_path, script_output):
    out = tmp_path / 'bench'
    output = script_output('tools/analysis_tools/benchmark_backbones.py', '--backbones',
                           'fastervit-0', '--sizes', '64x96', '--repeat', '1', '--warmup', '0',
                           '--peers', 'official', '--out', out, new_interpreter=True)
    assert 'fastervit-0 | 64x96' in output
    result = json.loads((out / 'benchmark.json').read_text())
    [record] = result['records']
    assert record['latency_ms'] > 0 and record['matmul_gflops'] > 0 and record['gmacs'] > 0
    assert 0 < record['achieved_fraction'] == pytest.approx(
        2 * record['gmacs'] * 1e9 / (record['latency_ms'] / 1e3) / (record['matmul_gflops'] * 1e9))
    assert record['peers']['official']['ratio'] > 0
    assert record['peak_mib'] > 100  # a fresh process's resident peak, libraries included


@pytest.mark.subprocess
@pytest.mark.training
@pytest.mark.parametrize('setting', [None, 'glibc default, gradients allocated first'])
def test_training_benchmark_measures_with_cp_memory_above_the_libraries(setting, script_output):
    """The with_cp case of the training benchmark, at a small size: it reports the step's resident
    peak and the training memory above the libraries, which holds at least the model's weights and
    their gradients (FasterViT-0: 30.9 M parameters, 118 MiB each) and is less than the peak."""
    job = dict(kind='checkpointing', with_cp=True, size=[64, 64], batch_size=1, setting=setting)
    output = script_output('tools/analysis_tools/benchmark_training.py', '--worker',
                           json.dumps(job), new_interpreter=True)
    record = json.loads(output.split('RESULT ', 1)[1].splitlines()[0])
    suffix = f' ({setting})' if setting else ''
    assert record['case'] == 'fastervit-0 backbone step, with_cp=True' + suffix
    assert 2 * 117 < record['training_mib'] < record['peak_mib']
    assert record['step_s'] > 0


def test_release_process_group_destroys_the_group_a_run_started(tmp_path):
    """The train and test tools end a distributed run by destroying its process group, so that no
    gloo work is left for interpreter shutdown (where a rank would abort after a good run)."""
    import torch
    import torch.distributed as dist
    from fastervit_dense.mm.runner import release_process_group
    release_process_group()  # nothing to release: no error
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    dist.all_reduce(torch.ones(1))
    assert dist.is_initialized()
    release_process_group()
    assert not dist.is_initialized()
