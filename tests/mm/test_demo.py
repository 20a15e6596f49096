"""``tools/demo.py``, shortened: every artifact, the console a newcomer reads (one line per phase, progress bars, a summary;
mmengine's output in log files), the seed, mixed precision, and the pictures (>= 800 px, legend)."""
import json
import os

import mmcv
import pytest

pytestmark = pytest.mark.demo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_demo(script_command, tmp_path, *extra):
    work_dir = tmp_path / 'demo'
    result = script_command(os.path.join(ROOT, 'tools', 'demo.py'), '--work-dir', work_dir,
                            '--data-root', tmp_path / 'data', '--num-train', '8', '--num-val', '4',
                            '--det-iters', '1', '--seg-iters', '1', '--num-drawings', '1', *extra,
                            new_interpreter=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return work_dir, result


def test_demo_console_pictures_and_seed(tmp_path, script_command):
    work_dir, result = run_demo(script_command, tmp_path, '--seed', '3', '--seg-amp', 'on')
    lines = result.stdout.splitlines()
    phases = [line for line in lines if line.startswith('demo [')]
    assert [p.split(']')[0] for p in phases] == [f'demo [{i}/6' for i in range(1, 7)]
    # nothing of mmengine's or pycocotools' output on the console: it is in the logs
    assert not any('mmengine' in line or 'loading annotations' in line or 'Config' in line
                   for line in lines), result.stdout
    assert len(lines) < 30, result.stdout
    assert 'training' in result.stderr and 'evaluating' in result.stderr  # the progress bars
    assert 'loss' in result.stderr

    assert 'training from random initialisation, seed 3' in result.stdout
    assert ': training 1 iteration (log: ' in result.stdout
    metrics = json.loads((work_dir / 'metrics.json').read_text())
    assert metrics['seed'] == 3 and metrics['pretrained'] is False and metrics['seconds'] > 0
    assert metrics['detection']['backbone'] == 'FastViT-T8'
    assert metrics['segmentation']['backbone'] == 'FasterViT-0'
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP'):
        assert 0.0 <= metrics['detection'][key] <= 1.0
    assert 0.0 <= metrics['segmentation']['mIoU'] <= 100.0
    assert set(metrics['segmentation']['IoU']) == {'background', 'rectangle', 'ellipse',
                                                    'triangle'}
    # the machine the figures were measured on: CPU, where bfloat16 ran, caps on instruction sets
    from fastervit_dense.mm.engine.optimizers import bfloat16_instructions
    from fastervit_dense.utils.benchmark import cpu_model, instruction_set_caps
    machine = metrics['machine']
    assert machine['cpu'] == cpu_model() and machine['cpu']
    assert machine['bfloat16_instructions'] == bfloat16_instructions()
    assert machine['instruction_set_caps'] == instruction_set_caps()
    summary = lines[lines.index('=' * 78) + 1:]
    assert any(line.strip().startswith('machine:') and machine['cpu'] in line for line in summary)
    assert any('mIoU' in line and 'ellipse' in line for line in summary)
    assert any('box mAP@0.5' in line for line in summary)
    # detections drawn from the score of best F1 on the validation split (0.3 when nothing is
    # found, as after this one iteration may happen)
    drawn = metrics['detection']['drawn_from_score']
    assert 0.0 <= drawn <= 1.0 and any('detections drawn from score' in line for line in summary)
    # where the time went: every phase, adding up to the total
    phases = metrics['seconds_by_phase']
    assert set(phases) == {'start', 'data', 'detection', 'segmentation'}
    for kind in ('detection', 'segmentation'):
        assert list(phases[kind]) == ['training', 'evaluation', 'pictures']
        assert all(seconds > 0 for seconds in phases[kind].values()), phases
    total = phases['start'] + phases['data'] + sum(
        sum(phases[kind].values()) for kind in ('detection', 'segmentation'))
    assert total == pytest.approx(metrics['seconds'], abs=0.5), (phases, metrics['seconds'])
    timing = summary[next(i for i, line in enumerate(summary) if line.strip().startswith('time:')):]
    assert timing[0].split('time:')[1].split() == [
        'start', f'{phases["start"]:.0f}', 's,', 'data', f'{phases["data"]:.0f}', 's']
    assert timing[1].split() == ['detector:', 'training', f'{phases["detection"]["training"]:.0f}',
                                 's,', 'evaluation', f'{phases["detection"]["evaluation"]:.0f}',
                                 's,', 'pictures', f'{phases["detection"]["pictures"]:.0f}', 's']
    assert timing[2].split()[:3] == ['segmentor:', 'training',
                                     f'{phases["segmentation"]["training"]:.0f}']
    logs = next(line for line in summary if line.strip().startswith('logs:'))
    for path in logs.split(':', 1)[1].split(','):
        assert os.path.getsize(path.strip()) > 0, path
    detection_log = next(p.strip() for p in logs.split(':', 1)[1].split(',') if 'detection' in p)
    text = open(detection_log).read()
    assert 'Config:' in text and 'randomness = dict(seed=3)' in text and 'coco/bbox_mAP' in text
    assert 'CPUAmpOptimWrapper' not in text  # the detector trains in float32

    # --seg-amp on: the segmentor trains in bfloat16 mixed precision, and says so
    where = (f'on {machine["bfloat16_instructions"]}' if machine['bfloat16_instructions'] else
             '(emulated: this CPU has no bfloat16 instructions)')
    assert f'segmentor (FasterViT-0): trains in bfloat16 mixed precision {where}' in result.stdout
    assert metrics['segmentation']['mixed_precision'] is True
    assert metrics['segmentation']['precision'] == 'bfloat16 mixed precision'
    assert any('mIoU' in line and 'bfloat16' in line for line in summary)
    segmentation_log = next(p.strip() for p in logs.split(':', 1)[1].split(',')
                            if 'segmentation' in p)
    assert "type='CPUAmpOptimWrapper'" in open(segmentation_log).read()

    for name in ('detection_00.png', 'segmentation_00.png'):
        picture = mmcv.imread(str(work_dir / name))
        assert picture.shape[1] >= 800, picture.shape
        # the legend strip at the bottom: white with coloured swatches
        assert (picture[-44:, :8] == 255).all() and (picture[-30:-14, 14:30] != 255).any()


def load_demo_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo_tool', os.path.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('amx,avx512_bf16,cap,expected', [
    (True, True, None, True),
    (True, True, 'AVX512_CORE_BF16', False),  # AMX switched off: bfloat16 measured slower there
    (False, True, None, False),  # AVX512-BF16 alone, e.g. AMD EPYC
    (False, False, None, False),  # emulated
])
def test_seg_amp_auto_trains_in_bfloat16_on_amx_only(monkeypatch, fake_cpu, amx, avx512_bf16, cap,
                                                     expected):
    import torch
    demo = load_demo_tool()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    fake_cpu(amx, avx512_bf16, cap)
    assert demo.segmentor_amp('auto') is expected
    assert demo.segmentor_amp('on') is True and demo.segmentor_amp('off') is False
