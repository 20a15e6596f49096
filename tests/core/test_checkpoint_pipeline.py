"""The one checkpoint pipeline: every weights operation of the core asks the same fit check, whose
strictness belongs to the layout's adapter and whose refusals share one message."""
import pytest
import timm
import torch

from fastervit_dense import FasterViT, FastViT
from fastervit_dense.checkpoint import (ADAPTERS, CheckpointAdapter, CheckpointError, FitReport,
                                        fit)
from fastervit_dense.converters import convert_file
from fastervit_dense.testing.reference import timm_fastvit


def shaped(**shapes):
    return {k: torch.empty(v, device='meta') for k, v in shapes.items()}


OWN = shaped(**{'a.weight': (4, 3), 'out_norm0.weight': (4,), 'bn.num_batches_tracked': ()})


def test_every_layout_has_its_adapter():
    # (the OpenMMLab layer adds 'mmengine', its configs' own checkpoints)
    assert {'dino', 'fastervit', 'fastervit_classifier', 'fastvit'} <= set(ADAPTERS)
    assert ADAPTERS['fastervit'] is FasterViT.checkpoint_adapter
    assert ADAPTERS['fastvit'] is FastViT.checkpoint_adapter


def test_the_fit_report_sorts_every_tensor():
    weights = shaped(**{'a.weight': (4, 3), 'extra': (2,), 'levels.3.x': (1,)})
    report = fit(weights, OWN, 'src.pth', 'Model', CheckpointAdapter(),
                 skip=lambda key: key.startswith('levels.3.'))
    assert report.loaded == ['a.weight'] and report.mismatched == []
    assert report.missing == ['out_norm0.weight']  # BatchNorm counters are not worth a line
    assert report.missing_all == ['out_norm0.weight', 'bn.num_batches_tracked']
    assert report.required == [] and report.unexpected == ['extra']
    assert report.skipped == ['levels.3.x']
    assert report.check() is report  # a backbone reports unexpected tensors, it does not refuse
    assert report.as_dict() == dict(loaded=1, missing=['out_norm0.weight'], unexpected=['extra'],
                                    skipped=['levels.3.x'], path=None)
    assert report.summary() == ("Model: loaded 1 tensors from src.pth; missing 1: out_norm0.weight; "
                                "unexpected 1: extra; skipped 1: levels.3.x")


def test_strictness_is_a_parameter_of_the_one_check():
    weights = shaped(**{'a.weight': (4, 3), 'extra': (2,)})
    with pytest.raises(CheckpointError) as info:
        fit(weights, OWN, 'src.pth', 'Model', CheckpointAdapter(), unexpected_ok=False).check()
    assert str(info.value) == 'src.pth does not fit Model: 1 unexpected (extra)'
    # without an adapter every tensor is required, BatchNorm counters included
    with pytest.raises(CheckpointError) as info:
        fit(shaped(**{'a.weight': (4, 4)}), OWN, 'src.pth', 'Model').check('fix it')
    assert str(info.value) == (
        'src.pth does not fit Model: 1 tensors with other shapes (a.weight: checkpoint (4, 4) vs '
        'model (4, 3)); 2 missing (out_norm0.weight, bn.num_batches_tracked); fix it')
    with pytest.raises(CheckpointError, match=r'^src.pth: no tensor in the checkpoint matches Model '
                       r'\(checkpoint keys start b, c\)$'):
        fit(shaped(b=(1,), c=(1,)), OWN, 'src.pth', 'Model', CheckpointAdapter()).check()


@pytest.fixture
def checks(monkeypatch):
    """The targets of every fit check made while the test runs."""
    seen = []
    original = FitReport.check

    def check(self, hint=''):
        seen.append(self.target)
        return original(self, hint)

    monkeypatch.setattr(FitReport, 'check', check)
    return seen


def test_loading_converting_and_timm_all_ask_the_one_check(checks, tmp_path,
                                                           official_fastervit0_checkpoint):
    torch.save(timm_fastvit('t8').state_dict(), tmp_path / 'fastvit_t8.pth')
    FastViT('t8').load_pretrained(str(tmp_path / 'fastvit_t8.pth'))
    assert checks == ["FastViT(arch='t8')"]
    convert_file(tmp_path / 'fastvit_t8.pth', tmp_path / 'converted.pth', 'fastvit')
    assert checks[1:] == ["fastvit arch 't8'"]
    timm.create_model('fastervit_dense_0', pretrained=True, num_classes=10,
                      pretrained_cfg_overlay=dict(file=str(official_fastervit0_checkpoint)))
    assert checks[2:] == ["FasterViTClassifier(arch='0')"]
