"""FastViT backbone: every variant, parity with timm's features, reparameterization, conventions."""
import copy

import pytest
import torch

from fastervit_dense import FastViT
from fastervit_dense.models.fastvit import FASTVIT_ARCHS
from fastervit_dense.testing.reference import relative_error, timm_fastvit, timm_fastvit_features

CHANNELS = {
    't8': [48, 96, 192, 384], 't12': [64, 128, 256, 512], 's12': [64, 128, 256, 512],
    'sa12': [64, 128, 256, 512], 'sa24': [64, 128, 256, 512], 'sa36': [64, 128, 256, 512],
    'ma36': [76, 152, 304, 608], 'mci0': [64, 128, 256, 512], 'mci1': [64, 128, 256, 512],
    'mci2': [80, 160, 320, 640], 'mci3': [96, 192, 384, 768, 1536],
    'mci4': [128, 256, 512, 1024, 2048],
}


@pytest.mark.parametrize('arch', list(FASTVIT_ARCHS))
def test_every_variant_gives_strided_outputs(arch):
    indices = tuple(range(FASTVIT_ARCHS[arch]['num_stages']))
    model = FastViT(arch, out_indices=indices).eval()
    assert model.num_features == CHANNELS[arch]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 97, 130))
    expected = [(1, CHANNELS[arch][i], -(-97 // 2**(i + 2)), -(-130 // 2**(i + 2))) for i in indices]
    assert [tuple(o.shape) for o in outs] == expected


@pytest.mark.parametrize('arch', ['t8', 'sa12', 'ma36', 'mci0'])
def test_matches_timm_features_when_loaded_from_timm_weights(tmp_path, arch):
    path = tmp_path / f'fastvit_{arch}.pth'
    torch.save(timm_fastvit(arch, seed=1).state_dict(), path)
    reference = timm_fastvit_features(arch, path)
    ours = FastViT(arch, out_norm_cfg=None, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        expected = reference(x)
        outs = ours(x)
        assert max(relative_error(o, e) for o, e in zip(outs, expected)) < 1e-5
        ours.switch_to_deploy()
        fused = ours(x)
    assert max(relative_error(o, e) for o, e in zip(fused, expected)) < 1e-4
    # Fusing changed the structure, so the comparison above compared two different graphs.
    assert not any('conv_kxk' in k for k in ours.state_dict())


def test_deploy_builds_the_fused_structure_and_loads_fused_weights(tmp_path):
    trained = FastViT('sa12', out_norm_cfg=None).eval()
    with torch.no_grad():
        for m in trained.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = trained(x)
    fused = copy.deepcopy(trained).switch_to_deploy()
    path = tmp_path / 'fused.pth'
    torch.save({'state_dict': fused.state_dict()}, path)
    deployed = FastViT('sa12', out_norm_cfg=None, deploy=True,
                       init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    deployed.init_weights()
    assert deployed.state_dict().keys() == fused.state_dict().keys()
    with torch.no_grad():
        outs = deployed.eval()(x)
    assert max(relative_error(o, e) for o, e in zip(outs, expected)) < 1e-4


@pytest.mark.parametrize('size', [(97, 300), (33, 65), (1, 1)])
def test_any_input_size(size):
    model = FastViT('sa12').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == [
        (-(-size[0] // 2**(i + 2)), -(-size[1] // 2**(i + 2))) for i in range(4)]


def test_frozen_stages_and_norm_eval():
    model = FastViT('t8', frozen_stages=1, norm_eval=True)
    assert model.train() is model
    assert not model.stem.training and not model.stages[0].training
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(not p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in bns)
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is None for p in model.stages[0].parameters())


def test_with_cp_keeps_fewer_activations_with_the_same_outputs_and_gradients(saved_for_backward):
    torch.manual_seed(0)
    plain = FastViT('t8', drop_path_rate=0.).train()
    checkpointed = FastViT('t8', drop_path_rate=0., with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outputs, grads = [], []
    for model in (plain, checkpointed):
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        outputs.append([o.detach() for o in outs])
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-6, rtol=1e-4)
    # Inside each stage only the checkpointed blocks' inputs are kept for the backward pass.
    kept = sum(b for b, _ in saved_for_backward(checkpointed, x).values())
    everything = sum(b for b, _ in saved_for_backward(plain, x).values())
    assert kept < 0.5 * everything, (kept, everything)


@pytest.mark.parametrize('kwargs,error,text', [
    (dict(arch='sa48'), ValueError, r"Unknown FastViT arch 'sa48'; valid names: 't8'.*'mci4'"),
    (dict(arch='sa12', out_indices=(4, )), ValueError, r'out_indices must be distinct stage indices in 0..3'),
    (dict(arch='sa12', frozen_stages=7), ValueError, r'frozen_stages must be an int in \[-1, 4\]'),
])
def test_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        FastViT(**kwargs)


@pytest.mark.parametrize('x,error,text', [
    (torch.randn(3, 64, 64), ValueError, r'\(B, 3, H, W\), got \(3, 64, 64\)'),
    (torch.randn(1, 1, 64, 64), ValueError, r'\(B, 3, H, W\), got \(1, 1, 64, 64\)'),
    (torch.zeros(1, 3, 8, 8, dtype=torch.int64), TypeError, r'floating-point.*torch.int64'),
])
def test_bad_input_tensors_are_named(x, error, text):
    with pytest.raises(error, match=text):
        FastViT('t8')(x)
