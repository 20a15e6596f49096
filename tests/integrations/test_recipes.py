"""docs/integrations.md's recipes for timm, segmentation_models_pytorch, transformers and
torchvision, run as they are written (each ``<!-- recipe: NAME -->`` block), against the published
FasterViT-0 file's layout in the kit's cache and with downloads switched off."""
import os
import re

import pytest
import torch

pytestmark = pytest.mark.training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recipes() -> dict:
    text = open(os.path.join(ROOT, 'docs', 'integrations.md')).read()
    found = re.findall(r'<!-- recipe: (\w+) -->\n```python\n(.*?)```', text, flags=re.S)
    return dict(found)


def run(name) -> dict:
    namespace = {'__name__': f'readme_recipe_{name}'}
    exec(compile(recipes()[name], f'docs/integrations.md recipe {name}', 'exec'), namespace)
    return namespace


def test_every_library_has_its_recipe():
    assert sorted(recipes()) == ['smp', 'timm', 'torchvision', 'transformers']


def test_timm_recipe(published_fastervit0):
    ns = run('timm')
    torch.testing.assert_close(ns['classifier'].patch_embed.conv_down[0].weight,
                               published_fastervit0['patch_embed.conv_down.0.weight'])
    assert ns['data_config']['crop_pct'] == 0.875
    assert [tuple(m.shape) for m in ns['maps']] == [(1, 128, 38, 63), (1, 256, 19, 32),
                                                    (1, 512, 10, 16)]


def test_smp_recipe(published_fastervit0):
    pytest.importorskip('segmentation_models_pytorch')
    ns = run('smp')
    assert torch.isfinite(ns['loss'])
    encoder = ns['model'].encoder.model.model
    torch.testing.assert_close(encoder.levels[2].blocks[0].mlp.fc1.weight.detach(),
                               published_fastervit0['levels.2.blocks.0.mlp.fc1.weight'],
                               rtol=1e-2, atol=1e-2)  # one AdamW step of 2e-4 away


def test_transformers_recipe(published_fastervit0):
    pytest.importorskip('transformers')
    ns = run('transformers')
    assert torch.isfinite(ns['loss'])
    from fastervit_dense import FasterViTClassifier
    for model in (ns['segmenter'], ns['detector']):
        (backbone, ) = [m for m in model.modules() if isinstance(m, FasterViTClassifier)]
        torch.testing.assert_close(backbone.levels[2].blocks[0].mlp.fc1.weight.detach(),
                                   published_fastervit0['levels.2.blocks.0.mlp.fc1.weight'])


def test_torchvision_recipe(published_fastervit0):
    ns = run('torchvision')
    assert set(ns['losses']) >= {'loss_classifier', 'loss_box_reg', 'loss_mask'}
    torch.testing.assert_close(ns['model'].backbone.body.patch_embed.conv_down[0].weight,
                               published_fastervit0['patch_embed.conv_down.0.weight'])
