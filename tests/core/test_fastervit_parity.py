"""FasterViT equals the official any-resolution model wherever that model runs with a square
window grid, with weights loaded from an official checkpoint file."""
import pytest
import torch

from fastervit_dense import FasterViT
from fastervit_dense.testing.reference import (StageFeatures, load_into_official, official_fastervit, randomize_,
                       relative_error, save_official_checkpoint)

TOLERANCE = 1e-4  # of the feature scale, float32


def _ours(arch, checkpoint, **kwargs):
    model = FasterViT(arch, out_norm_cfg=None,
                      init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)), **kwargs)
    model.init_weights()
    return model.eval()


def _compare(official, ours, size, seed=0):
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    reference = StageFeatures(official)(official, x)
    with torch.no_grad():
        outputs = ours(x)
    assert [tuple(o.shape) for o in outputs] == [tuple(r.shape) for r in reference]
    return x, reference, [relative_error(o, r) for o, r in zip(outputs, reference)]


@pytest.mark.parametrize('size,window_size', [
    ((224, 224), None),
    ((448, 448), [7, 7, 14, 7]),
    ((672, 672), [7, 7, 12, 6]),
])
def test_fastervit0_matches_official_at_square_grids(official_fastervit0_checkpoint, size,
                                                      window_size):
    kwargs = {} if window_size is None else dict(window_size=window_size)
    official = load_into_official(official_fastervit('0', size, **kwargs),
                                  official_fastervit0_checkpoint)
    ours = _ours('0', official_fastervit0_checkpoint, **kwargs)
    _, _, errors = _compare(official, ours, size)
    assert max(errors) < TOLERANCE, errors


def test_parity_test_sees_the_carrier_tokens(official_fastervit0_checkpoint):
    """Zeroing or permuting the official model's carrier tokens moves its features far beyond the
    parity tolerance (stage 3, where they live, by over 100x; stage 4 after it by over 10x), so the
    parity tests above would catch a broken carrier path."""
    official = load_into_official(official_fastervit('0', (448, 448), window_size=[7, 7, 14, 7]),
                                  official_fastervit0_checkpoint)
    x = torch.randn(1, 3, 448, 448)
    reference = StageFeatures(official)(official, x)
    tokenizer = official.levels[2].global_tokenizer
    original = tokenizer.forward
    for disturb in (lambda t: t * 0, lambda t: t.flip(1)):
        tokenizer.forward = lambda t, d=disturb: d(original(t))
        disturbed = StageFeatures(official)(official, x)
        tokenizer.forward = original
        assert relative_error(disturbed[2], reference[2]) > 100 * TOLERANCE
        assert relative_error(disturbed[3], reference[3]) > 10 * TOLERANCE


@pytest.mark.parametrize('arch', ['1', '3', '4-21k-224'])
def test_other_variants_match_official_at_224(tmp_path, arch):
    official = randomize_(official_fastervit(arch, (224, 224)), seed=2)
    path = save_official_checkpoint(official, tmp_path / f'fastervit_{arch}.pth.tar')
    ours = _ours(arch, path)
    _, _, errors = _compare(official, ours, (224, 224))
    assert max(errors) < TOLERANCE, errors


def test_carrier_propagation_matches_official_at_448(tmp_path):
    """FasterViT-3 propagates carrier tokens back into the map in each HAT stage's last block."""
    source = randomize_(official_fastervit('3', (224, 224)), seed=3)
    path = save_official_checkpoint(source, tmp_path / 'fastervit_3.pth.tar')
    official = load_into_official(official_fastervit('3', (448, 448), window_size=[7, 7, 14, 7]),
                                  path)
    ours = _ours('3', path, window_size=[7, 7, 14, 7])
    _, _, errors = _compare(official, ours, (448, 448))
    assert max(errors) < TOLERANCE, errors
