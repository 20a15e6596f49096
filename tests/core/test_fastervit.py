"""FasterViT backbone behaviour: any input size, stable state, training features, registries, errors."""
import copy

import pytest
import torch

from fastervit_dense import FasterViT

# A small model with carrier tokens in stages 3 and 4 and propagation, for fast tests.
TINY = dict(depths=[1, 1, 2, 2], num_heads=[1, 2, 2, 4], window_size=[7, 7, 7, 7], ct_size=2,
            dim=16, in_dim=8, mlp_ratio=2., hat=[False, False, True, True], layer_scale=None,
            propagation=True, drop_path_rate=0.)


def tiny(**kwargs):
    kwargs.setdefault('out_norm_cfg', None)
    return FasterViT(arch=TINY, **kwargs)


def expected_shapes(model, batch, height, width):
    shapes = []
    for i in model.out_indices:
        stride = 2**(i + 2)
        shapes.append((batch, model.num_features[i], -(-height // stride), -(-width // stride)))
    return shapes


@pytest.mark.parametrize('size', [(1, 1), (5, 3), (16, 16), (64, 64), (97, 300), (300, 97),
                                  (224, 224), (256, 448), (333, 129)])
def test_one_instance_serves_every_size(size):
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert [tuple(o.shape) for o in outs] == expected_shapes(model, 2, *size)
    assert all(torch.isfinite(o).all() for o in outs)


def test_fastervit0_mixed_sizes_in_one_process():
    model = FasterViT('0').eval()
    for size in [(224, 224), (97, 300), (512, 512), (64, 64), (320, 480)]:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, *size))
        assert [tuple(o.shape) for o in outs] == expected_shapes(model, 1, *size)


def test_batch_elements_are_independent_and_padding_is_cropped():
    model = tiny().eval()
    x = torch.randn(3, 3, 97, 150)
    with torch.no_grad():
        together = model(x)
        alone = model(x[1:2])
    for t, a in zip(together, alone):
        torch.testing.assert_close(t[1:2], a, atol=1e-5, rtol=1e-4)


def test_carrier_tokens_and_their_position_mlp_act_on_non_square_grids():
    """At a non-square window grid (here 2x5 windows in stage 3) the carrier positional MLP and the
    carrier attention are in use: disturbing either changes stage 3's output."""
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(1, 3, 14 * 16, 35 * 16)
    with torch.no_grad():
        base = model(x)[2]
        for name in ('hat_pos_embed.cpb_mlp.2.weight', 'hat_attn.qkv.weight'):
            changed = copy.deepcopy(model)
            param = dict(changed.levels[2].blocks[0].named_parameters())[name]
            param.add_(torch.randn_like(param))
            assert (changed(x)[2] - base).abs().max() > 1e-3, name


def test_single_window_inputs_use_no_carrier_tokens():
    """With one window per stage there is nothing to carry across windows: the carrier layers do not
    affect the result (as in the published model)."""
    model = tiny().eval()
    x = torch.randn(1, 3, 100, 100)  # stage 3: 7x7 map, one window
    with torch.no_grad():
        base = model(x)
        changed = copy.deepcopy(model)
        changed.levels[2].global_tokenizer.pos_embed.weight.add_(1.0)
        assert all(torch.equal(a, b) for a, b in zip(base, changed(x)))


def test_state_is_unchanged_by_forwards_at_any_size():
    model = tiny()
    before = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    values = copy.deepcopy(model.state_dict())
    model.eval()
    with torch.no_grad():
        for size in [(64, 64), (97, 300), (300, 97), (224, 224)]:
            model(torch.randn(1, 3, *size))
            assert {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()} == before
            clone = copy.deepcopy(model)
            assert clone.state_dict().keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, values[k]), k
    # The only buffers are BatchNorm statistics: nothing computed from the input is kept.
    assert all(('norm' in k or 'conv_down' in k) for k, _ in model.named_buffers())


def test_deepcopy_after_training_forward_backward():
    model = tiny().train()
    model(torch.randn(2, 3, 97, 150))[-1].sum().backward()
    clone = copy.deepcopy(model)
    clone.eval()
    model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model(x), clone(x)):
            assert torch.equal(a, b)


def test_training_gives_gradients_to_every_parameter():
    model = FasterViT(arch=dict(TINY, drop_path_rate=0.1), out_norm_cfg=dict(type='LN2d')).train()
    outs = model(torch.randn(2, 3, 256, 480))  # stage 4: 2x3 windows, so carriers are active
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_bfloat16_autocast_on_cpu():
    model = tiny().eval()
    x = torch.randn(1, 3, 97, 150)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
    for o, r in zip(outs, reference):
        assert o.dtype == torch.bfloat16
        assert (o.float() - r).abs().max() < 0.1 * r.abs().max()


def test_traced_graph_follows_the_input_size():
    """A trace taken at one size gives eager results at other sizes (grids are not frozen)."""
    model = tiny().eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 224, 224), check_trace=False)
        for size in [(97, 300), (64, 64), (320, 256)]:
            x = torch.randn(1, 3, *size)
            for a, b in zip(traced(x), model(x)):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_position_embedding_on_the_dino_codes_coordinates():
    """``coords='tokens'``: both axes centred and scaled by half the token count, as FasterViT's
    DINO code computes them (a 7x7 window spans [-1, -0.75]); 'side' scales each axis by half its
    side. Checked against the coordinates written out, for square and non-square grids."""
    from fastervit_dense.models.position import PositionEmbeddingMLP
    torch.manual_seed(0)
    side = PositionEmbeddingMLP(8).eval()
    tokens = PositionEmbeddingMLP(8, coords='tokens').eval()
    tokens.load_state_dict(side.state_dict())
    for grid_h, grid_w in [(7, 7), (4, 6), (1, 3)]:
        half = grid_h * grid_w // 2
        rows = [(i - half) / max(half, 1) for i in range(grid_h)]
        cols = [(j - half) / max(half, 1) for j in range(grid_w)]
        coords = torch.tensor([[r, c] for r in rows for c in cols])
        torch.testing.assert_close(tokens(grid_h, grid_w)[0], side.cpb_mlp(coords))
        rows = [(i - grid_h // 2) / max(grid_h // 2, 1) for i in range(grid_h)]
        cols = [(j - grid_w // 2) / max(grid_w // 2, 1) for j in range(grid_w)]
        coords = torch.tensor([[r, c] for r in rows for c in cols])
        torch.testing.assert_close(side(grid_h, grid_w)[0], side.cpb_mlp(coords))
    assert float(coords.min()) >= -1
    # a whole backbone: same weights and keys, different features, and still any size traced
    model = tiny().eval()
    dino = tiny(pos_embed_coords='tokens').eval()
    assert dino.load_state_dict(model.state_dict()) is not None
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        assert not torch.allclose(dino(x)[-1], model(x)[-1])
        traced = torch.jit.trace(dino, torch.randn(1, 3, 224, 224), check_trace=False)
        for a, b in zip(traced(x), dino(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_conv_stages_padded_to_the_window_multiple_as_the_dino_code_does():
    """``pad_conv_stages``: stages 1-2 run on their map zero-padded (bottom, right) to a multiple of
    the window size and are cropped after, so the padding's values reach the border pixels from
    the second block on; at sizes that are multiples nothing changes."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    plain = tiny().eval()
    padded = tiny(pad_conv_stages=True).eval()
    padded.load_state_dict(plain.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 112, 224)  # stage maps 28x56 and 14x28: multiples of 7
        for a, b in zip(plain(x), padded(x)):
            torch.testing.assert_close(a, b)
        x = torch.randn(1, 3, 100, 130)  # stage-1 map 25x33, padded to 28x35
        stem = plain.patch_embed(x)
        reference = F.pad(stem, (0, 2, 0, 3))
        for block in plain.levels[0].blocks:
            reference = block(reference)
        reference = reference[:, :, :25, :33]
        torch.testing.assert_close(padded.levels[0](stem), reference)
        assert not torch.allclose(plain.levels[0](stem), reference)
        traced = torch.jit.trace(padded, torch.randn(1, 3, 224, 224), check_trace=False)
        for a, b in zip(traced(x), padded(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_output_norms_and_out_indices():
    model = FasterViT(arch=TINY, out_indices=(1, 3)).eval()
    assert hasattr(model, 'out_norm1') and hasattr(model, 'out_norm3')
    assert not hasattr(model, 'out_norm0')
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128]
    # A channel LayerNorm: zero mean over channels at each position.
    assert outs[0].mean(1).abs().max() < 1e-4


def test_frozen_stages_have_no_gradients_and_stay_frozen_after_train():
    model = tiny(frozen_stages=2)
    model.train()
    frozen = [model.patch_embed, model.levels[0], model.levels[1]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert model.levels[2].training
    assert model.levels[1].downsample is not None
    assert all(not p.requires_grad for p in model.levels[1].downsample.parameters())
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in model.levels[2].blocks[0].attn.parameters())
    assert model.train() is model


def test_norm_eval_keeps_batchnorm_in_eval_mode():
    model = tiny(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    stats = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(stats, bns[0].running_mean)


def test_with_cp_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = tiny().train()
    checkpointed = tiny(with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 97, 150)
    results = []
    for model in (plain, checkpointed):
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        results.append(([o.detach() for o in outs],
                        {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    assert results[0][1].keys() == results[1][1].keys()
    assert any('hat_attn' in name for name in results[0][1])  # the carrier path was exercised
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], atol=1e-6, rtol=1e-4)


def test_with_cp_keeps_only_checkpoint_inputs_for_backward(saved_for_backward):
    x = torch.randn(2, 3, 224, 224)
    plain = saved_for_backward(FasterViT(arch=TINY).train(), x)
    checkpointed = saved_for_backward(FasterViT(arch=TINY, with_cp=True).train(), x)
    plain_bytes = sum(b for b, _ in plain.values())
    kept_bytes = sum(b for b, _ in checkpointed.values())
    assert kept_bytes < 0.25 * plain_bytes, (kept_bytes, plain_bytes)
    # The stem is checkpointed too: nothing at its stride-2 resolution is kept.
    assert any(shape[-2:] == (112, 112) for _, shape in plain.values())
    assert not any(112 in shape for _, shape in checkpointed.values()), checkpointed.values()


def test_presets_build_with_published_channels():
    for arch, dim in [('0', 64), ('1', 80), ('2', 96)]:
        assert FasterViT(arch).num_features == [dim, 2 * dim, 4 * dim, 8 * dim]


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('x,error,text', [
    (torch.randn(3, 64, 64), ValueError, r'\(B, 3, H, W\), got \(3, 64, 64\)'),
    (torch.randn(1, 4, 64, 64), ValueError, r'\(B, 3, H, W\), got \(1, 4, 64, 64\)'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r'floating-point.*torch.uint8'),
])
def test_bad_input_tensors_are_named(x, error, text):
    with pytest.raises(error, match=text):
        tiny()(x)


@pytest.mark.parametrize('kwargs,text', [
    (dict(arch='7'), r"Unknown FasterViT arch '7'; valid names: '0', '1'.*'4-21k-768'"),
    (dict(arch=dict(TINY, depths=[1, 1, 1])), r'depths must list 4 values'),
    (dict(arch=TINY, window_size=[7, 7, 7]), r'window_size must list 4 values'),
    (dict(arch=TINY, hat=[True, False, True, False]), r'stages 1-2 are convolutional'),
    (dict(arch=TINY, hat=[False, True]), r'hat must list 4 values'),
    (dict(arch=TINY, out_indices=(0, 4)), r'out_indices must be distinct stage indices in 0..3'),
    (dict(arch=TINY, ct_size=9), r'ct_size 9 exceeds window_size\[2\]=7'),
    (dict(arch=TINY, frozen_stages=5), r'frozen_stages must be an int in \[-1, 4\]'),
    (dict(arch={'depths': [1, 1, 1, 1]}), r'missing keys'),
    (dict(arch=TINY, pos_embed_coords='grid'),
     r"pos_embed_coords must be one of \('side', 'tokens'\), got 'grid'"),
])
def test_bad_arguments_fail_at_construction(kwargs, text):
    with pytest.raises(ValueError, match=text):
        FasterViT(**kwargs)


def test_batchnorm_folding_matches_separate_layers_with_gradients():
    """With running statistics in use, conv+BN run as one folded convolution: same outputs and the
    same gradients (also to the BatchNorm's affine parameters) as the two layers applied in turn."""
    from fastervit_dense.models.fastervit import ConvBlock, Stem
    torch.manual_seed(0)
    for module in (ConvBlock(16), Stem(3, 8, 16)):
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.5, 0.5)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        module.eval()
        x = torch.randn(2, module.conv_down[0].in_channels if isinstance(module, Stem) else 16,
                        20, 28)
        if isinstance(module, Stem):
            layers = module.conv_down
            reference = lambda: layers[5](layers[4](layers[3](layers[2](layers[1](layers[0](x))))))
        else:
            b = module
            reference = lambda: x + b.norm2(b.conv2(b.act1(b.norm1(b.conv1(x)))))
        results = []
        for run in (lambda: module(x), reference):
            module.zero_grad()
            out = run()
            out.square().sum().backward()
            results.append((out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
        for name, grad in results[1][1].items():
            torch.testing.assert_close(results[0][1][name], grad, rtol=1e-4, atol=1e-4)


def test_batchnorm_layers_run_only_when_they_use_batch_statistics():
    model = tiny()
    calls = []
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.eval()(x)
        assert not calls  # folded into the convolutions
        model.train()(x)
    assert len(calls) == 2 + 2 * sum(TINY['depths'][:2])  # stem and conv blocks


def test_outputs_are_contiguous_whatever_the_input_memory_format():
    model = tiny().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = model(x)
        from_channels_last = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(plain, from_channels_last):
        assert a.is_contiguous() and b.is_contiguous()
        torch.testing.assert_close(a, b)


def test_short_sequence_attention_on_cpu_matches_the_fused_kernel(monkeypatch):
    from fastervit_dense.models import fastervit
    from fastervit_dense.models.fastervit import WindowAttention
    torch.manual_seed(0)
    attention = WindowAttention(32, 4)
    x = torch.randn(6, 4 + 25, 32)
    prefix_bias = torch.tensor(-0.7)
    outputs = []
    for threshold in (64, 0):  # 64: matrix products (29 tokens); 0: the fused kernel
        monkeypatch.setattr(fastervit, '_SMALL_ATTENTION', threshold)
        attention.zero_grad()
        out = attention(x, 5, 5, num_prefix=4, prefix_bias=prefix_bias)
        out.square().sum().backward()
        outputs.append((out.detach(), attention.qkv.weight.grad.clone()))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs[0][1], outputs[1][1], rtol=1e-4, atol=1e-5)


def test_gelu_works_in_place_only_when_no_gradient_is_recorded():
    from fastervit_dense.models.fastervit import GELU
    x = torch.randn(4, 7, 16)
    expected = torch.nn.functional.gelu(x)
    with torch.no_grad():
        y = x.clone()
        out = GELU()(y)
    assert out.data_ptr() == y.data_ptr()  # no fresh output in inference
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    leaf = x.clone().requires_grad_()
    out = GELU()(leaf)
    assert out.data_ptr() != leaf.data_ptr()
    out.sum().backward()
    reference = x.clone().requires_grad_()
    torch.nn.functional.gelu(reference).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad)


@pytest.mark.parametrize('cfg,cls', [
    (dict(type='LN2d', eps=1e-6), 'LayerNorm2d'), (dict(type='BN'), 'BatchNorm2d'),
    (dict(type='SyncBN', momentum=0.01), 'SyncBatchNorm'),
    (dict(type='GN', num_groups=8, requires_grad=False), 'GroupNorm')])
def test_output_norms_from_openmmlab_norm_configs(cfg, cls):
    model = tiny(out_norm_cfg=cfg, out_indices=(1, 3))
    assert [type(getattr(model, f'out_norm{i}')).__name__ for i in (1, 3)] == [cls, cls]
    assert all(p.requires_grad == cfg.get('requires_grad', True)
               for p in model.out_norm1.parameters())


@pytest.mark.parametrize('cfg,text', [
    (dict(type='IN'), r"out_norm_cfg type 'IN' is not supported; use one of LN2d, .*GN, or None"),
    (dict(type='GN'), 'needs num_groups'), (dict(type='BN', bogus=1), r"out_norm_cfg .*bogus"),
    ('LN2d', 'must be None or a dict')])
def test_bad_output_norm_configs_are_named(cfg, text):
    with pytest.raises((ValueError, TypeError), match=text):
        tiny(out_norm_cfg=cfg)


@pytest.mark.parametrize('init_cfg,text', [
    (dict(type='Kaiming'), r'init_cfg must be None or dict\(type="Pretrained"'),
    (dict(type='Pretrained'), 'needs "checkpoint"'),
    (dict(type='Pretrained', checkpoint='x.pth', strict=True), r"unknown: \['strict'\]")])
def test_unsupported_init_cfg_is_named(init_cfg, text):
    with pytest.raises(ValueError, match=text):
        tiny(init_cfg=init_cfg)
