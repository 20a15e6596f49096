"""The kit's mmengine pieces for training on a CPU: bfloat16 mixed precision."""
import os

import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPERS

from fastervit_dense.mm.engine import CPUAmpOptimWrapper

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    'configs', 'demo')


class FloatOnlyHead(nn.Module):
    """Stands for mmcv's compiled CPU operators, which take float32 only."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        if x.dtype != torch.float32:
            raise RuntimeError(f'expected scalar type Float but found {x.dtype}')
        return self.fc(x.mean((2, 3)))


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.neck = nn.Conv2d(8, 8, 1)
        self.head = FloatOnlyHead()
        self.seen = []
        self.backbone[0].register_forward_hook(lambda m, i, o: self.seen.append(o.dtype))

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))


def wrapper(model, **kwargs):
    return OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', optimizer=torch.optim.SGD(
        model.parameters(), lr=0.1), **kwargs))


def test_whole_model_trains_in_bfloat16_with_float32_parameters_and_gradients():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(2))
    optim = wrapper(model)
    x = torch.randn(2, 3, 8, 8)
    with optim.optim_context(model):
        out = model(x)
    assert out.dtype == torch.bfloat16
    optim.update_params(out.float().square().mean())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model(x).dtype == torch.float32  # outside training steps: float32


def test_named_submodules_autocast_and_hand_float32_to_the_heads():
    model = Detector()
    with pytest.raises(RuntimeError, match='found torch.bfloat16'):
        with wrapper(model).optim_context(model):  # whole-model autocast breaks float32-only ops
            model(torch.randn(2, 3, 8, 8))
    model = Detector()
    optim = wrapper(model, autocast_modules=('backbone', 'neck'))
    for _ in range(2):  # hooks installed once, active only inside the context
        with optim.optim_context(model):
            out = model(torch.randn(2, 3, 8, 8))
        assert out.dtype == torch.float32
        optim.update_params(out.square().mean())
        assert model.backbone[0].weight.grad is None  # zeroed by update_params
    assert model.seen == [torch.bfloat16, torch.bfloat16]
    model(torch.randn(2, 3, 8, 8))
    assert model.seen[-1] == torch.float32


def test_gradients_reach_the_autocast_submodules():
    model = Detector()
    optim = wrapper(model, autocast_modules=('backbone',))
    with optim.optim_context(model):
        loss = model(torch.randn(2, 3, 8, 8)).square().mean()
    optim.backward(loss)
    grad = model.backbone[0].weight.grad
    assert grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0


def test_bad_settings_name_the_problem():
    model = Detector()
    with pytest.raises(ValueError, match="names 'rpn_head', which Detector does not have "
                                         r'\(its submodules: backbone, neck, head\)'):
        with wrapper(model, autocast_modules=('rpn_head',)).optim_context(model):
            pass
    with pytest.raises(ValueError, match='float16 autocast needs a GPU'):
        CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(model.parameters(), lr=1))


def test_amp_without_a_gpu_picks_bfloat16_whole_segmentors_and_detector_backbones():
    from fastervit_dense.mm.runner import load_config, use_amp
    if torch.cuda.is_available():
        pytest.skip('without a GPU only')
    original = load_config(os.path.join(DEMO, 'fpn_fastervit-0_synthetic.py'))
    seg = use_amp(original)
    assert seg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert 'autocast_modules' not in seg.optim_wrapper
    assert original.optim_wrapper.type == 'OptimWrapper'  # the caller's config is left as it was
    det = use_amp(load_config(os.path.join(DEMO, 'mask-rcnn_fastvit-t8_fpn_synthetic.py')))
    assert det.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert det.optim_wrapper.autocast_modules == ['backbone', 'neck']


def test_amp_on_a_gpu_is_mmengines_float16_and_says_so(monkeypatch):
    from fastervit_dense.mm.runner import amp_dtype, load_config, use_amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert amp_dtype() == 'float16'  # what the demo prints as the segmentor's precision
    seg = use_amp(load_config(os.path.join(DEMO, 'fpn_fastervit-0_synthetic.py')))
    assert seg.optim_wrapper.type == 'AmpOptimWrapper'
    assert seg.optim_wrapper.loss_scale == 'dynamic'


def test_a_failing_submodule_leaves_no_autocast_behind():
    model = Detector()
    optim = wrapper(model, autocast_modules=('backbone',))
    with pytest.raises(RuntimeError, match='expected input'):
        with optim.optim_context(model):
            model.backbone(torch.randn(2, 4, 8, 8))  # wrong channels: raises inside the hooks
    assert not torch.is_autocast_enabled('cpu')
    assert model.backbone(torch.randn(2, 3, 8, 8)).dtype == torch.float32


@pytest.mark.parametrize('amx,avx512_bf16,cap,expected', [
    (True, True, None, 'AMX'),
    (True, True, 'avx10_1_512_amx', 'AMX'),
    (True, True, 'AVX512_CORE_BF16', 'AVX512-BF16'),  # AMX switched off by the cap
    (False, True, None, 'AVX512-BF16'),  # e.g. AMD EPYC (Zen 4 and later)
    (True, True, 'AVX512_CORE', None),
    (True, True, 'AVX2', None),
    (False, False, None, None),
])
def test_bfloat16_instructions_follow_the_cpu_and_onednns_cap(monkeypatch, fake_cpu, amx,
                                                              avx512_bf16, cap, expected):
    from fastervit_dense.mm.engine.optimizers import bfloat16_instructions, cpu_bf16_is_fast
    fake_cpu(amx, avx512_bf16, cap)
    assert bfloat16_instructions() == expected
    assert cpu_bf16_is_fast() == (expected is not None)
    if cap:  # oneDNN's older spelling of the same cap
        monkeypatch.delenv('ONEDNN_MAX_CPU_ISA')
        monkeypatch.setenv('DNNL_MAX_CPU_ISA', cap)
        assert bfloat16_instructions() == expected


def test_amp_warns_where_bfloat16_would_be_emulated(monkeypatch):
    from fastervit_dense.mm.runner import load_config, use_amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    seg = load_config(os.path.join(DEMO, 'fpn_fastervit-0_synthetic.py'))
    with pytest.warns(UserWarning, match='bfloat16 is emulated there and trains slower'):
        use_amp(seg)


def test_runner_functions_raise_and_leave_the_callers_config_alone(tmp_path):
    from fastervit_dense.mm.runner import ConfigError, build_model, load_config
    with pytest.raises(FileNotFoundError, match="config file 'nowhere.py' does not exist"):
        load_config('nowhere.py')
    plain = tmp_path / 'plain.py'
    plain.write_text('model = dict(type="X")\n')
    with pytest.raises(ConfigError, match="default_scope is None; the kit runs mmdet and mmseg"):
        load_config(str(plain))
    cfg = load_config(os.path.join(DEMO, 'fpn_fastervit-0_synthetic.py'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint='somewhere.pth')
    build_model(cfg)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='somewhere.pth')
