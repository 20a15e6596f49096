"""FasterViT as a timm model (``fastervit_dense_*``): names, pretrained configurations, the published
files read by the kit, parity with the official classifier, timm's classifier and feature APIs at
any input size. Nothing here reaches the network."""
import os
import pickle

import pytest
import timm
import torch

from fastervit_dense import FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FasterViT
from fastervit_dense.checkpoint import CheckpointError
from fastervit_dense.models import timm_models
from fastervit_dense.models.timm_models import TIMM_NAMES, FasterViTClassifier
from fastervit_dense.testing.reference import official_fastervit, randomize_

#: Logits of the kit's classifier against the official model's, same weights, at 224 (measured
#: 3.5e-6 for FasterViT-0 and 4.5e-6 for FasterViT-1 with logits of magnitude 10).
LOGIT_TOLERANCE = 1e-5
#: Stage maps of the timm feature model against the kit's backbone: the same code, the same weights.
FEATURE_TOLERANCE = 1e-6


@pytest.fixture(autouse=True)
def torch_home(isolated_downloads):
    return isolated_downloads


@pytest.fixture(scope='module')
def official0(tmp_path_factory):
    """The official FasterViT-0 classifier (random weights that exercise every branch) and its
    weights saved as the published file is laid out."""
    from fastervit_dense.testing.reference import save_official_checkpoint
    model = randomize_(official_fastervit('0', (224, 224)), seed=1)
    path = tmp_path_factory.mktemp('official') / 'fastervit_0_224_1k.pth.tar'
    return model, save_official_checkpoint(model, path)


def test_every_preset_has_a_name_listed_with_its_published_weights():
    assert sorted(TIMM_NAMES.values()) == sorted(FASTERVIT_ARCHS)
    assert timm.list_models('fastervit_dense_*') == sorted(TIMM_NAMES, key=timm_models_key)
    pretrained = timm.list_pretrained('fastervit_dense_*')
    assert len(pretrained) == len(TIMM_NAMES)
    for tagged in pretrained:
        name, tag = tagged.split('.')
        arch = TIMM_NAMES[name]
        assert tag == ('in21k_ft_in1k' if '21k' in arch else 'in1k')
        cfg = timm.models.get_pretrained_cfg(tagged)
        assert cfg.url == FasterViT.published_weights(arch) == FASTERVIT_WEIGHTS[arch][tag]
        assert cfg.num_classes == 1000 and cfg.classifier == 'head'


def timm_models_key(name):
    # timm lists names in natural order: fastervit_dense_4 before fastervit_dense_4_21k_224.
    return [int(t) if t.isdigit() else t for t in name.replace('_', ' ').split()]


def test_data_configurations_are_the_official_models():
    """Input size, crop, interpolation, mean and std: the official package's own table."""
    from fastervit.models.faster_vit import default_cfgs as official
    names = {**{f'fastervit_dense_{i}': f'faster_vit_{i}_224' for i in range(7)},
             **{f'fastervit_dense_4_21k_{s}': f'faster_vit_4_21k_{s}' for s in (224, 384, 512, 768)}}
    keys = ('input_size', 'crop_pct', 'crop_mode', 'interpolation', 'mean', 'std', 'url')
    for ours, theirs in names.items():
        config = timm.data.resolve_model_data_config(timm.create_model(ours, num_classes=0)) \
            if ours == 'fastervit_dense_0' else None
        cfg = timm.models.get_pretrained_cfg(ours).to_dict()
        assert {k: tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k] for k in keys} == {
            k: tuple(official[theirs][k]) if isinstance(official[theirs][k], list)
            else official[theirs][k] for k in keys}, ours
        if config is not None:
            assert config == dict(input_size=(3, 224, 224), interpolation='bicubic',
                                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                  crop_pct=0.875, crop_mode='center')


def test_pretrained_classifier_equals_the_official_one(official0):
    reference, path = official0
    model = timm.create_model('fastervit_dense_0', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=LOGIT_TOLERANCE)
    # The classifier is not the identity: another image gives other logits.
    assert (theirs[0] - theirs[1]).abs().max() > 100 * LOGIT_TOLERANCE


def test_published_url_is_downloaded_once_by_the_kit(official0, server, torch_home,
                                                     monkeypatch):
    """The default pretrained configuration's URL, served on loopback: timm's pretrained loading
    hands the URL itself to the model's loader, once, which downloads it into torch hub's cache
    and reads it; then read from there."""
    from fastervit_dense.models.timm_models import FasterViTClassifier
    reference, path = official0
    data = open(path, 'rb').read()
    url = server.add('/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar', data)
    calls, load = [], FasterViTClassifier.load_pretrained
    monkeypatch.setattr(FasterViTClassifier, 'load_pretrained',
                        lambda self, source=None, **kw: calls.append(source) or load(self, source,
                                                                                    **kw))
    first = timm.create_model('fastervit_dense_0.in1k', pretrained=True,
                              pretrained_cfg_overlay=dict(url=url)).eval()
    assert calls == [url]  # no download before timm's loading, one call from it
    second = timm.create_model('fastervit_dense_0.in1k', pretrained=True,
                               pretrained_cfg_overlay=dict(url=url)).eval()
    assert server.counts['/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'] == 1
    assert open(torch_home / 'fastervit_0_224_1k.pth.tar', 'rb').read() == data
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(first(x), reference(x), rtol=0, atol=LOGIT_TOLERANCE)
        torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)


def test_published_file_in_the_cache_needs_no_network(official0, torch_home, monkeypatch):
    """``pretrained=True`` with nothing overridden: the published URL's cache file is used."""
    reference, path = official0
    os.makedirs(torch_home, exist_ok=True)
    cached = torch_home / os.path.basename(FasterViT.published_weights('0'))
    cached.write_bytes(open(path, 'rb').read())
    monkeypatch.setenv('FASTERVIT_DENSE_OFFLINE', '1')
    model = timm.create_model('fastervit_dense_0', pretrained=True).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=LOGIT_TOLERANCE)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ('echo owned',))

    path = tmp_path / 'hostile.pth.tar'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {}, 'x': Payload()}, f)
    with pytest.raises(CheckpointError, match='hostile.pth.tar'):
        timm.create_model('fastervit_dense_0', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path)))


def test_another_class_count_keeps_the_backbone_and_a_new_head(official0):
    reference, path = official0
    model = timm.create_model('fastervit_dense_0', pretrained=True, num_classes=7,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert model.get_classifier().out_features == 7
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        ref_pooled = torch.flatten(reference.avgpool(reference.forward_features(x)), 1)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=LOGIT_TOLERANCE)
    assert model(x).shape == (1, 7)
    model.reset_classifier(0)
    assert model(x).shape == (1, 512)


def test_one_input_channel_adapts_the_first_convolution(official0):
    _, path = official0
    model = timm.create_model('fastervit_dense_0', pretrained=True, in_chans=1,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    stem = torch.load(path, weights_only=False)['state_dict']['patch_embed.conv_down.0.weight']
    torch.testing.assert_close(model.patch_embed.conv_down[0].weight, stem.sum(1, keepdim=True))
    assert model(torch.randn(1, 1, 96, 160)).shape == (1, 1000)


def test_attribute_names_keep_timms_meaning():
    """``num_features`` is the pooled width (an int), as timm's classifiers have it, where the
    backbone lists its stages' widths (the classifier's ``feature_info``); ``in_chans`` is timm's
    name of the backbone's ``in_channels``."""
    from fastervit_dense import FasterViT
    model = timm.create_model('fastervit_dense_0', num_classes=0, in_chans=2).eval()
    backbone = FasterViT('0', in_channels=2)
    assert model.num_features == backbone.num_features[-1] == 512
    assert [info['num_chs'] for info in model.feature_info] == backbone.num_features
    assert model.in_chans == 2 and model.patch_embed.conv_down[0].in_channels == 2
    with torch.no_grad():
        assert model(torch.randn(1, 2, 64, 96)).shape == (1, model.num_features)


def test_weights_of_another_preset_are_refused_naming_it(official0):
    _, path = official0
    with pytest.raises(CheckpointError, match=r"does not fit FasterViTClassifier\(arch='1'\).*"
                       r"look like arch '0'"):
        timm.create_model('fastervit_dense_1', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 2), (0, 1)])
def test_features_only_equal_the_kit_backbone_at_any_size(official0, out_indices):
    _, path = official0
    features = timm.create_model('fastervit_dense_0', pretrained=True, features_only=True,
                                 out_indices=out_indices,
                                 pretrained_cfg_overlay=dict(file=str(path))).eval()
    backbone = FasterViT('0', out_indices=out_indices, out_norm_cfg=None).eval()
    backbone.load_pretrained(str(path))
    assert features.feature_info.channels() == [64 * 2**i for i in out_indices]
    assert features.feature_info.reduction() == [2**(i + 2) for i in out_indices]
    # Stages after the last output are not kept, nor the classifier.
    kept = {k.split('.')[2] for k in features.state_dict() if k.startswith('model.levels.')}
    assert kept == {str(i) for i in range(max(out_indices) + 1)}
    assert not any(k.startswith(('model.head.', 'model.norm.')) for k in features.state_dict())
    for size in [(200, 328), (96, 96), (333, 250)]:  # not multiples of 32, square or not
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ours, theirs = features(x), backbone(x)
        assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=FEATURE_TOLERANCE)


def test_forward_intermediates_follows_timm():
    torch.manual_seed(0)
    model = timm.create_model('fastervit_dense_0').eval()
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, indices=2)
        assert [m.shape[1] for m in maps] == [256, 512]
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        only = model.forward_intermediates(x, indices=[0], intermediates_only=True)
        assert len(only) == 1 and only[0].shape == (1, 64, 40, 56)
        normed = model.forward_intermediates(x, indices=[3], norm=True, intermediates_only=True)
        torch.testing.assert_close(normed[0], final, rtol=0, atol=0)
    with pytest.raises(ValueError, match="NCHW maps only, got output_fmt='NHWC'"):
        model.forward_intermediates(x, output_fmt='NHWC')


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model('fastervit_dense_0', num_classes=5, drop_path_rate=0.)
    x = torch.randn(2, 3, 96, 128)

    def grads():
        model.zero_grad()
        model(x).square().sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    assert model.with_cp and all(level.with_cp for level in model.levels)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and len(plain) > 100
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_unsupported_arguments_get_clear_errors():
    with pytest.raises(ValueError, match='output stride 32 only, got output_stride=16'):
        timm.create_model('fastervit_dense_0', output_stride=16)
    with pytest.raises(TypeError, match="features_only=True with out_indices"):
        FasterViTClassifier('0', out_indices=(1, 2))
    assert timm.create_model('fastervit_dense_0', output_stride=32).num_classes == 1000


def test_names_stay_apart_from_the_official_package():
    """The official package registers ``faster_vit_*`` with timm; both keep their own."""
    import fastervit  # noqa: F401 (registers the official names)
    official = timm.create_model('faster_vit_0_224')
    assert type(official).__module__.startswith('fastervit.')
    assert isinstance(timm.create_model('fastervit_dense_0'), FasterViTClassifier)


def test_registration_refuses_to_replace_a_model_of_another_origin(monkeypatch):
    assert timm_models.register_timm_models() == list(TIMM_NAMES)  # again: nothing changes
    assert isinstance(timm.create_model('fastervit_dense_2', num_classes=0), FasterViTClassifier)

    def foreign(pretrained=False, **kwargs):
        raise AssertionError('never built')

    monkeypatch.setattr(timm_models, 'model_entrypoint', lambda name: foreign)
    with pytest.raises(RuntimeError, match="timm already has a model named 'fastervit_dense_0' "
                       "that is not the kit's"):
        timm_models.register_timm_models()
