"""The export wrapper is chosen by the model's class (its first class that has one), so subclasses
export as their family does, and a new family is one registered wrapper."""
import pytest
import torch.nn as nn

from fastervit_dense.mm import deploy


class TwoStageDetector(nn.Module):  # stands for mmdet's class of that name
    pass


class MyRCNN(TwoStageDetector):
    pass


class RetinaNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Identity()


def test_subclasses_export_as_their_family():
    from fastervit_dense.mm.deploy.two_stage import TwoStageExport
    assert deploy._wrapper_for(MyRCNN()) is TwoStageExport


def test_an_unsupported_family_is_named_before_anything_is_copied():
    with pytest.raises(ValueError, match='exporting a whole RetinaNet is not supported'):
        deploy.exportable(RetinaNet())


def test_a_new_family_is_one_registered_wrapper(monkeypatch):
    monkeypatch.setattr(deploy, 'WRAPPERS', dict(deploy.WRAPPERS))

    class RetinaNetExport(nn.Module):
        output_names = ('dets', 'labels')

        def __init__(self, detector):
            super().__init__()
            self.detector = detector

    assert deploy.register_wrapper('RetinaNet', RetinaNetExport) is RetinaNetExport
    model = RetinaNet().train()
    wrapped = deploy.exportable(model)
    assert isinstance(wrapped, RetinaNetExport) and wrapped.detector is model
    assert not wrapped.training and not model.training  # exported in eval mode
