"""Hugging Face transformers with FasterViT through ``TimmBackbone``: UperNet segments and Deformable
DETR detects, both trained a few steps on non-square images and run at another size, with the
configurations built locally (no hub look-up)."""
import pytest
import torch

transformers = pytest.importorskip('transformers')
from transformers import (DeformableDetrConfig, DeformableDetrForObjectDetection,  # noqa: E402
                          TimmBackboneConfig, UperNetConfig,
                          UperNetForSemanticSegmentation)

from fastervit_dense import FasterViTClassifier  # noqa: E402 (also registers the timm names)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


def upernet(**backbone):
    config = UperNetConfig(
        backbone_config=TimmBackboneConfig(backbone='fastervit_dense_0', out_indices=[0, 1, 2, 3],
                                           **backbone),
        num_labels=3, hidden_size=64, auxiliary_in_channels=256, auxiliary_channels=32)
    return UperNetForSemanticSegmentation(config)


@pytest.mark.training
def test_upernet_trains_and_segments_at_another_size(train_steps):
    torch.manual_seed(0)
    model = upernet()
    assert model.backbone.channels == [64, 128, 256, 512]
    x = torch.randn(2, 3, 160, 224)
    labels = torch.zeros(2, 160, 224, dtype=torch.long)
    labels[:, 40:120, 60:200] = 1
    x[:, 0] += labels * 0.5
    losses = train_steps(model, lambda m: m(pixel_values=x, labels=labels).loss)
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 150, 230)).logits.shape == (1, 3, 150, 230)


def published_into(model):
    """docs/integrations.md's recipe: the published weights loaded by the kit into the FasterViT inside a
    built model (transformers 5's ``TimmBackbone.from_pretrained`` resets the BatchNorm
    statistics of timm backbones, a timm ResNet's too)."""
    (backbone, ) = [m for m in model.modules() if isinstance(m, FasterViTClassifier)]
    return backbone, backbone.load_pretrained()


def test_upernet_takes_the_published_weights(published_fastervit0):
    model = upernet()
    backbone, report = published_into(model)
    own = backbone.state_dict()
    assert report['loaded'] == len(own)
    for key, value in own.items():
        torch.testing.assert_close(value, published_fastervit0[key], rtol=0, atol=0)
    with torch.no_grad():
        assert model.eval()(pixel_values=torch.randn(1, 3, 96, 160)).logits.shape == (1, 3, 96,
                                                                                      160)


def deformable_detr():
    config = DeformableDetrConfig(
        backbone_config=TimmBackboneConfig(backbone='fastervit_dense_0', out_indices=[1, 2, 3]),
        num_labels=3, d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20,
        num_feature_levels=4)
    return DeformableDetrForObjectDetection(config)


@pytest.mark.training
def test_deformable_detr_trains_and_detects_at_another_size(train_steps):
    torch.manual_seed(0)
    model = deformable_detr()
    x = torch.randn(2, 3, 160, 224)
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.4]])  # centre x, y, w, h
    labels = [dict(class_labels=torch.tensor([1, 2]), boxes=boxes) for _ in range(2)]
    losses = train_steps(model, lambda m: m(pixel_values=x, labels=labels).loss)
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 150, 230))
    assert out.logits.shape == (1, 20, 3) and out.pred_boxes.shape == (1, 20, 4)


def test_published_weights_load_into_a_built_detector(published_fastervit0):
    """Deformable DETR swaps its backbone's BatchNorms for frozen ones and the features-only model
    holds stages 1-4 only: the published file still loads into it, and it runs in both modes."""
    model = deformable_detr()
    backbone, report = published_into(model)
    assert report['loaded'] > 200 and any(k.startswith('norm.') for k in report['skipped'])
    torch.testing.assert_close(backbone.patch_embed.conv_down[1].running_var,
                               published_fastervit0['patch_embed.conv_down.1.running_var'])
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            assert model(pixel_values=torch.randn(1, 3, 96, 160)).logits.shape == (1, 20, 3)


def test_an_output_stride_fastervit_cannot_give_is_refused():
    with pytest.raises(ValueError, match='FasterViT has output stride 32 only, got '
                       'output_stride=16'):
        upernet(output_stride=16)
