"""Published checkpoints into the kit: converters, direct loading, and safe unpickling."""
import pytest
import torch

from fastervit_dense import FasterViT, FastViT
from fastervit_dense.checkpoint import CheckpointError, load_checkpoint_file
from fastervit_dense.testing.reference import (StageFeatures, official_fastervit, randomize_, relative_error,
                       save_official_checkpoint, timm_fastvit, timm_fastvit_features,
                       to_apple_layout)


def pretrained(cls, path, **kwargs):
    model = cls(out_norm_cfg=None, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


class RunsCode:
    """Unpickling this object runs code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def hostile_checkpoint(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'patch_embed.conv_down.0.weight': torch.zeros(1)},
                'payload': RunsCode(marker)}, path)
    return path, marker


@pytest.fixture
def truncated_checkpoint(tmp_path, official_fastervit0_checkpoint):
    data = open(official_fastervit0_checkpoint, 'rb').read()
    path = tmp_path / 'truncated.pth.tar'
    path.write_bytes(data[:len(data) // 2])
    return path


# ------------------------------------------------------------------------------------ FasterViT
def test_fastervit_converter_keeps_backbone_and_matches_official(tmp_path,
                                                                 official_fastervit0_checkpoint,
                                                                 converter_command):
    dst = tmp_path / 'converted.pth'
    # the script started as a user starts it (one test per script; the others run its command
    # line in this process)
    result = converter_command('fastervit2mm.py', official_fastervit0_checkpoint, dst,
                               new_interpreter=True)
    assert result.returncode == 0, result.stderr
    assert 'arch: 0 (inferred)' in result.stdout
    # Plain tensors only: loads with torch's strictest setting.
    converted = torch.load(dst, weights_only=True)
    meta, state_dict = converted['meta'], converted['state_dict']
    import hashlib
    assert meta['source_sha256'] == hashlib.sha256(
        open(official_fastervit0_checkpoint, 'rb').read()).hexdigest()
    assert meta['arch'] == '0' and meta['kind'] == 'fastervit'
    assert not any(k.startswith(('head.', 'norm.')) or 'relative_' in k for k in state_dict)
    assert set(meta['missing_in_backbone']) == {
        f'out_norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}

    official = official_fastervit('0', (224, 224))
    official.load_state_dict(torch.load(official_fastervit0_checkpoint, weights_only=False)
                             ['state_dict'])
    ours = pretrained(FasterViT, dst, arch='0')
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        errors = [relative_error(o, r) for o, r in zip(ours(x), StageFeatures(official)(official, x))]
    assert max(errors) < 1e-4


def test_direct_loading_logs_counts_and_missing_output_norms(official_fastervit0_checkpoint):
    model = FasterViT('0', init_cfg=dict(type='Pretrained',
                                         checkpoint=str(official_fastervit0_checkpoint)))
    report = model.load_pretrained(str(official_fastervit0_checkpoint))
    assert report['unexpected'] == []
    assert sorted(report['missing']) == sorted(
        f'out_norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert report['loaded'] == len(model.state_dict()) - 8


def test_ema_weights_and_module_prefix(tmp_path, converter_command):
    source = randomize_(official_fastervit('0', (224, 224)), seed=4)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = tmp_path / 'with_ema.pth.tar'
    torch.save({'state_dict': {'module.' + k: v for k, v in source.state_dict().items()},
                'state_dict_ema': ema}, path)
    for flag, expected in (([], source.state_dict()), (['--ema'], ema)):
        dst = tmp_path / f'out{len(flag)}.pth'
        assert converter_command('fastervit2mm.py', path, dst, *flag).returncode == 0
        weight = torch.load(dst, weights_only=True)['state_dict']['patch_embed.conv_down.0.weight']
        assert torch.equal(weight, expected['patch_embed.conv_down.0.weight'])


def test_224_weights_load_into_other_windows_and_carrier_sizes(official_fastervit0_checkpoint):
    for kwargs in (dict(window_size=[7, 7, 14, 7]), dict(ct_size=1), dict(window_size=[7, 7, 12, 6],
                                                                            ct_size=3)):
        model = pretrained(FasterViT, official_fastervit0_checkpoint, arch='0', **kwargs)
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 320, 480))
        assert all(torch.isfinite(o).all() for o in outs)


def test_another_variant_is_an_error_naming_shapes_and_variant(tmp_path, converter_command):
    path = save_official_checkpoint(official_fastervit('1', (224, 224)), tmp_path / 'fvit1.pth.tar')
    with pytest.raises(CheckpointError) as info:
        pretrained(FasterViT, path, arch='0')
    text = str(info.value)
    assert "does not fit FasterViT(arch='0'): " in text and 'tensors with other shapes' in text
    assert 'patch_embed.conv_down.0.weight: checkpoint (32, 3, 3, 3) vs model (64, 3, 3, 3)' in text
    assert "look like arch '1'" in text
    result = converter_command('fastervit2mm.py', path, tmp_path / 'x.pth', '--arch', '0')
    assert result.returncode == 1 and "look like arch '1'" in result.stderr
    assert not (tmp_path / 'x.pth').exists()


def test_checkpoint_of_another_model_is_an_error(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 512)}, path)
    with pytest.raises(CheckpointError, match=r'no tensor in the checkpoint matches '
                       r"FasterViT\(arch=.0.\).*prefix='backbone.'"):
        pretrained(FasterViT, path, arch='0')


# ------------------------------------------------------------------------------------ FastViT
@pytest.fixture(scope='module')
def fastvit_sa12(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fastvit')
    model = timm_fastvit('sa12', seed=5)
    timm_file = folder / 'fastvit_sa12.pth'
    torch.save(model.state_dict(), timm_file)
    return model, timm_file, folder


def _timm_features(path, x):
    with torch.no_grad():
        return timm_fastvit_features('sa12', path)(x)


@pytest.mark.parametrize('layout', ['apple', 'apple_reparam', 'timm_safetensors', 'timm_bin',
                                    'mobileclip', 'features_only'])
def test_fastvit_layouts_convert_and_load_directly(fastvit_sa12, tmp_path, layout,
                                                   converter_command):
    import copy

    from timm.utils.model import reparameterize_model
    model, timm_file, _ = fastvit_sa12
    weights = model.state_dict()
    fused = layout == 'apple_reparam'
    if layout == 'apple':
        path = tmp_path / 'fastvit_sa12.pth.tar'
        torch.save({'state_dict': to_apple_layout(weights)}, path)
    elif fused:
        path = tmp_path / 'fastvit_sa12_reparam.pth.tar'
        fused_weights = reparameterize_model(copy.deepcopy(model)).state_dict()
        torch.save({'state_dict': to_apple_layout(fused_weights, fused=True)}, path)
    elif layout == 'timm_safetensors':
        from safetensors.torch import save_file
        path = tmp_path / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    elif layout == 'timm_bin':
        path = tmp_path / 'pytorch_model.bin'
        torch.save(weights, path)
    elif layout == 'mobileclip':
        path = tmp_path / 'mobileclip_s0.pt'
        torch.save({'state_dict': {'image_encoder.model.' + k: v
                                   for k, v in to_apple_layout(weights).items()}}, path)
    else:
        import timm
        features = timm.create_model('fastvit_sa12', features_only=True)
        features.load_state_dict({k.replace('stem.', 'stem_', 1).replace('stages.', 'stages_', 1): v
                                  for k, v in weights.items() if k.startswith(('stem.', 'stages.'))})
        path = tmp_path / 'features.pth'
        torch.save(features.state_dict(), path)

    x = torch.randn(1, 3, 96, 160)
    expected = _timm_features(timm_file, x)
    tolerance = 1e-4 if fused else 1e-5
    direct = pretrained(FastViT, path, arch='sa12', deploy=fused)
    dst = tmp_path / 'converted.pth'
    # the script itself once; its command line in-process for the other layouts
    result = converter_command('fastvit2mm.py', path, dst, new_interpreter=layout == 'apple')
    assert result.returncode == 0, result.stderr
    assert 'arch: sa12 (inferred)' in result.stdout
    converted = pretrained(FastViT, dst, arch='sa12', deploy=fused)
    with torch.no_grad():
        for model_ in (direct, converted):
            errors = [relative_error(o, e) for o, e in zip(model_(x), expected)]
            assert max(errors) < tolerance, (layout, errors)


def test_fused_weights_into_unfused_backbone_say_deploy(fastvit_sa12, tmp_path):
    import copy

    from timm.utils.model import reparameterize_model
    model, _, _ = fastvit_sa12
    path = tmp_path / 'fastvit_sa12_reparam.pth.tar'
    torch.save({'state_dict': to_apple_layout(
        reparameterize_model(copy.deepcopy(model)).state_dict(), fused=True)}, path)
    with pytest.raises(CheckpointError, match=r'fused FastViT weights.*set deploy=True'):
        pretrained(FastViT, path, arch='sa12')


def test_fastvit_wrong_variant_names_the_variant(fastvit_sa12):
    _, timm_file, _ = fastvit_sa12
    with pytest.raises(CheckpointError, match=r"look like arch 'sa12'"):
        pretrained(FastViT, timm_file, arch='sa24')
    with pytest.raises(CheckpointError, match=r'tensors with other shapes \(.*: checkpoint .* vs model'):
        pretrained(FastViT, timm_file, arch='ma36')


# ------------------------------------------------------------------------------------ safety
def test_unpickling_code_is_refused_on_every_path(hostile_checkpoint, tmp_path,
                                                 converter_command):
    path, marker = hostile_checkpoint
    with pytest.raises(CheckpointError, match=r'refused to load .*hostile.pth.*could run code'):
        load_checkpoint_file(path)
    for cls, arch in ((FasterViT, '0'), (FastViT, 't8')):
        with pytest.raises(CheckpointError, match='refused to load'):
            pretrained(cls, path, arch=arch)
    for script in ('fastervit2mm.py', 'fastvit2mm.py'):
        dst = tmp_path / f'{script}.out'
        result = converter_command(script, path, dst)
        assert result.returncode == 1 and 'refused to load' in result.stderr
        assert not dst.exists()
    assert not marker.exists()
    assert not any(p.name.endswith('.tmp') for p in tmp_path.iterdir())


def test_truncated_file_is_named_and_nothing_is_written(truncated_checkpoint, tmp_path,
                                                       converter_command):
    with pytest.raises(CheckpointError, match=r'cannot read checkpoint .*truncated.pth.tar.*'
                                              r'truncated or corrupted'):
        pretrained(FasterViT, truncated_checkpoint, arch='0')
    dst = tmp_path / 'out.pth'
    result = converter_command('fastervit2mm.py', truncated_checkpoint, dst)
    assert result.returncode == 1 and 'truncated or corrupted' in result.stderr
    assert not dst.exists()


def test_missing_file_says_how_to_name_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist: fix the path, or name an "
                       r"http\(s\):// URL or a Hugging Face Hub id \('hf-hub:OWNER/REPO'\)"):
        pretrained(FasterViT, tmp_path / 'checkpoints' / 'fastervit_0_224_1k.pth.tar', arch='0')


def test_published_training_checkpoint_needs_only_namespace(official_fastervit0_checkpoint):
    """The official layout holds an argparse.Namespace beyond torch's defaults, and nothing else."""
    from fastervit_dense.testing.reference import non_torch_globals
    assert non_torch_globals(official_fastervit0_checkpoint) == {'argparse.Namespace'}
    checkpoint = load_checkpoint_file(official_fastervit0_checkpoint)
    assert checkpoint['args'].model == 'faster_vit_0_224'


@pytest.mark.subprocess
def test_the_shared_command_line_takes_the_kind(tmp_path, converter_command):
    """``convert_backbone.py --kind fastvit SRC DST``: the command that fastervit2mm.py and
    fastvit2mm.py fix the kind of; the library itself parses no arguments and prints nothing."""
    src = tmp_path / 'fastvit_t8.pth'
    torch.save(timm_fastvit('t8', seed=8).state_dict(), src)
    dst = tmp_path / 'converted.pth'
    result = converter_command('convert_backbone.py', '--kind', 'fastvit', src, dst,
                               new_interpreter=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'arch: t8 (inferred)' in result.stdout
    assert torch.load(dst, weights_only=True)['meta']['arch'] == 't8'
