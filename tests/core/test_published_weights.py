"""Published weights named as the ecosystem names them (a URL, an ``hf-hub:`` id) load through the
backbones' ``load_pretrained`` and the converters: downloaded once from a loopback server, cached,
verified, read safely. Nothing here reaches the network."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from fastervit_dense import (FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FASTVIT_ARCHS, FASTVIT_WEIGHTS,
                             FasterViT, FastViT)
from fastervit_dense.checkpoint import CheckpointError
from fastervit_dense.hub import DownloadError
from fastervit_dense.testing.reference import timm_fastvit
from fastervit_dense.testing.servers import fill_hf_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def torch_home(isolated_downloads):
    return isolated_downloads


def test_every_preset_has_its_published_weights():
    assert sorted(FASTERVIT_WEIGHTS) == sorted(FASTERVIT_ARCHS)
    assert FasterViT.published_weights('4-21k-384') == (
        'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_384_w24.pth.tar')
    assert sorted(FASTVIT_WEIGHTS) == sorted(FASTVIT_ARCHS)
    assert FastViT.published_weights('sa12') == 'hf-hub:timm/fastvit_sa12.apple_in1k'
    assert FastViT.published_weights('sa12', 'apple_dist_in1k') == (
        'hf-hub:timm/fastvit_sa12.apple_dist_in1k')
    with pytest.raises(ValueError, match=r"no published weights 'x' for FastViT-t8; published: "
                       'apple_in1k, apple_dist_in1k'):
        FastViT.published_weights('t8', 'x')


def test_both_backbones_share_one_table_shape_and_one_signature():
    """Preset -> settings dict; preset -> {tag: source}; ``published_weights(arch, tag=None)``."""
    for archs, weights in ((FASTERVIT_ARCHS, FASTERVIT_WEIGHTS), (FASTVIT_ARCHS, FASTVIT_WEIGHTS)):
        assert all(isinstance(settings, dict) for settings in archs.values())
        assert all(isinstance(tags, dict) and tags and all(isinstance(s, str) for s in tags.values())
                   for tags in weights.values())
    assert FasterViT.published_weights('4-21k-384', 'in21k_ft_in1k') == (
        FasterViT.published_weights('4-21k-384'))
    assert FasterViT.published_weights('0', 'in1k').endswith('/fastervit_0_224_1k.pth.tar')
    with pytest.raises(ValueError, match=r"no published weights 'in22k' for FasterViT-2; "
                       'published: in1k'):
        FasterViT.published_weights('2', 'in22k')
    with pytest.raises(ValueError, match=r"no published weights for FasterViT arch '9'"):
        FasterViT.published_weights('9')
    # FastViT's hub ids are timm's pretrained configurations', tags and order included.
    from timm.models import get_arch_pretrained_cfgs
    assert list(FASTVIT_WEIGHTS['mci0']) == [
        name.split('.', 1)[1] for name in get_arch_pretrained_cfgs('fastvit_mci0')]
    assert FASTVIT_WEIGHTS['mci0']['apple_mclip'] == 'hf-hub:apple/mobileclip_s0_timm'
    assert FASTVIT_ARCHS['mci4'] == dict(num_stages=5)


def test_url_downloads_once_then_loads_from_the_cache(server, torch_home,
                                                      official_fastervit0_checkpoint):
    data = open(official_fastervit0_checkpoint, 'rb').read()
    url = server.add('/ahatamiz/fastervit_0_224_1k.pth.tar', data)
    local = FasterViT('0', out_norm_cfg=None)
    local.load_pretrained(str(official_fastervit0_checkpoint))
    remote = FasterViT('0', out_norm_cfg=None)
    report = remote.load_pretrained(url)
    assert report['path'] == str(torch_home / 'fastervit_0_224_1k.pth.tar')
    assert open(report['path'], 'rb').read() == data
    for (k, a), b in zip(local.state_dict().items(), remote.state_dict().values()):
        assert torch.equal(a, b), k
    server.shutdown()  # cached: no network needed any more
    again = FasterViT('0', out_norm_cfg=None)
    assert again.load_pretrained(url)['loaded'] == report['loaded']
    assert server.counts['/ahatamiz/fastervit_0_224_1k.pth.tar'] == 1


def test_published_weights_load_without_naming_them_from_a_filled_cache(
        torch_home, monkeypatch, official_fastervit0_checkpoint):
    """``load_pretrained()`` names the preset's published URL; offline, a file put in the cache by
    hand serves it."""
    monkeypatch.setenv('FASTERVIT_DENSE_OFFLINE', '1')
    with pytest.raises(DownloadError, match=r'fastervit_0_224_1k\.pth\.tar.*FASTERVIT_DENSE_OFFLINE'):
        FasterViT('0').load_pretrained()
    torch_home.mkdir(parents=True)
    (torch_home / 'fastervit_0_224_1k.pth.tar').write_bytes(
        open(official_fastervit0_checkpoint, 'rb').read())
    assert FasterViT('0').load_pretrained()['loaded'] > 300


def test_hostile_pickle_by_url_is_refused_and_runs_nothing(server, tmp_path):
    marker = tmp_path / 'code_ran'
    payload = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {}, 'x': _RunsCode(marker)}, payload)
    url = server.add('/hostile.pth', payload.read_bytes())
    with pytest.raises(CheckpointError,
                       match=r'refused to load .*could run code \(GLOBAL (io|builtins)\.open\)'):
        FastViT('t8').load_pretrained(url)
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_sha256_through_init_cfg_and_the_converter(server, tmp_path, torch_home,
                                                   converter_command):
    source = tmp_path / 'fastvit_t8.pth'
    torch.save(timm_fastvit('t8', seed=3).state_dict(), source)
    url = server.add('/fastvit_t8.pth', source.read_bytes())
    wrong = 'f' * 64
    model = FastViT('t8', init_cfg=dict(type='Pretrained', checkpoint=url, sha256=wrong))
    with pytest.raises(DownloadError, match='does not match the expected sha256'):
        model.init_weights()
    assert not (torch_home / 'fastvit_t8.pth').exists()
    dst = tmp_path / 'converted.pth'
    result = converter_command('fastvit2mm.py', url, dst, '--sha256', wrong)
    assert result.returncode == 1 and 'does not match the expected sha256' in result.stderr
    assert not dst.exists()
    right = hashlib.sha256(source.read_bytes()).hexdigest()
    result = converter_command('fastvit2mm.py', url, dst, '--sha256', right)
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(dst, weights_only=True)['meta']['source_sha256'] == right


_TIMM_AND_KIT_FROM_THE_HUB = r'''
import json, sys, torch, timm
from fastervit_dense import FastViT
x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
reference = timm.create_model('fastvit_t8.apple_in1k', pretrained=True, features_only=True).eval()
ours = FastViT('t8', out_norm_cfg=None).eval()
report = ours.load_pretrained()  # the published id, hf-hub:timm/fastvit_t8.apple_in1k
with torch.no_grad():
    error = max(float((a - b).abs().max()) for a, b in zip(ours(x), reference(x)))
print(json.dumps(dict(error=error, path=report['path'], loaded=report['loaded'])))
'''


@pytest.mark.subprocess
def test_hf_hub_id_offline_gives_timms_own_features(tmp_path):
    """From an ``HF_HOME`` filled by hand and ``HF_HUB_OFFLINE=1``: the kit's FastViT loaded from
    the published hub id gives the features of timm's own model loaded from the same id."""
    from safetensors.torch import save
    weights = save({k: v.contiguous() for k, v in timm_fastvit('t8', seed=4).state_dict().items()})
    paths = fill_hf_cache(tmp_path / 'hf', 'timm/fastvit_t8.apple_in1k',
                          {'model.safetensors': weights})
    env = dict(os.environ, HF_HOME=str(tmp_path / 'hf'), HF_HUB_OFFLINE='1',
               HF_ENDPOINT='http://127.0.0.1:9', TORCH_HOME=str(tmp_path / 'torch'))
    result = subprocess.run([sys.executable, '-c', _TIMM_AND_KIT_FROM_THE_HUB], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome['path'] == paths['model.safetensors'] and outcome['loaded'] > 100
    assert outcome['error'] < 1e-5
