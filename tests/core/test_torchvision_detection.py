"""torchvision's detection models with the kit's backbones (``fastervit_dense.detection``): each
trains a few steps on non-square images and then detects at another input size."""
from collections import OrderedDict

import pytest
import torch
from torchvision.models.detection import FCOS, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fastervit_dense import FasterViT
from fastervit_dense.detection import FPNBackbone, fpn_backbone

SMALL = dict(min_size=160, max_size=256)


def batch(sizes, seed=0, masks=False):
    """Images of the given (height, width) with two boxes each (and their masks)."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for h, w in sizes:
        image = torch.rand(3, h, w, generator=gen) * 0.2
        boxes = torch.tensor([[0.1 * w, 0.15 * h, 0.5 * w, 0.6 * h],
                              [0.55 * w, 0.4 * h, 0.9 * w, 0.9 * h]]).round()
        target = dict(boxes=boxes, labels=torch.tensor([1, 2]))
        mask = torch.zeros(2, h, w, dtype=torch.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            image[k % 3, y0:y1, x0:x1] += 0.8  # objects a detector can learn to find
            mask[k, y0:y1, x0:x1] = 1
        if masks:
            target['masks'] = mask
        images.append(image)
        targets.append(target)
    return images, targets


def train_then_detect(model, train_steps, masks=False, steps=3):
    """Trains ``steps`` SGD steps on one batch (non-square images); returns the first and last
    total losses, then detects on images of another size and returns the detections and the input
    sizes the backbone saw in training and at detection."""
    seen = []
    model.backbone.body.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-2:]))
    images, targets = batch([(150, 230), (170, 200)], masks=masks)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005,
                                momentum=0.9)
    losses = train_steps(model, lambda m: sum(m(images, targets).values()),
                         watched=next(model.backbone.body.parameters()), steps=steps,
                         optimizer=optimizer)
    model.eval()
    with torch.no_grad():
        detections = model(batch([(190, 140)], seed=1)[0])
    return losses, detections, seen


@pytest.mark.training
def test_mask_rcnn_with_fastervit_trains_and_detects_at_another_size(train_steps):
    torch.manual_seed(0)
    backbone = fpn_backbone('fastervit-0', out_channels=64, drop_path_rate=0.)
    assert backbone.out_channels == 64
    model = MaskRCNN(backbone, num_classes=3, rpn_pre_nms_top_n_train=200,
                     rpn_post_nms_top_n_train=100, box_batch_size_per_image=64, **SMALL)
    losses, detections, seen = train_then_detect(model, train_steps, masks=True)
    assert losses[-1] < losses[0], losses
    assert seen[0] == (160, 256) and seen[-1] == (224, 160), seen  # 217x160, padded to 32
    result = detections[0]
    assert set(result) == {'boxes', 'labels', 'scores', 'masks'}
    assert result['boxes'].shape[1:] == (4, ) and result['masks'].shape[1:] == (1, 190, 140)
    assert len(result['boxes']) > 0


@pytest.mark.training
def test_retinanet_with_fastvit_and_fcos_with_fastervit_train_and_detect(train_steps):
    torch.manual_seed(0)
    anchors = AnchorGenerator(tuple((s, int(s * 1.26), int(s * 1.59)) for s in (16, 32, 64, 128,
                                                                                256)),
                              ((0.5, 1.0, 2.0), ) * 5)
    retina = RetinaNet(fpn_backbone('fastvit-t8', out_channels=64, out_indices=(1, 2, 3),
                                    extra_blocks=LastLevelP6P7(64, 64)),
                       num_classes=3, anchor_generator=anchors, **SMALL)
    losses, detections, _ = train_then_detect(retina, train_steps)
    assert losses[-1] < losses[0], losses
    assert detections[0]['boxes'].shape[1:] == (4, )

    fcos = FCOS(fpn_backbone('fastervit-0', out_channels=64, out_indices=(1, 2, 3),
                             extra_blocks=LastLevelP6P7(64, 64), drop_path_rate=0.),
                num_classes=3, anchor_generator=AnchorGenerator(((8, ), (16, ), (32, ), (64, ),
                                                                 (128, )), ((1.0, ), ) * 5),
                **SMALL)
    losses, detections, _ = train_then_detect(fcos, train_steps)
    assert losses[-1] < losses[0], losses
    assert detections[0]['boxes'].shape[1:] == (4, )


def test_pyramid_maps_are_named_and_shaped_as_torchvision_expects():
    body = FasterViT('0', out_indices=(0, 1, 2, 3))
    neck = fpn_backbone(body, out_channels=32).eval()
    with torch.no_grad():
        maps = neck(torch.randn(1, 3, 96, 160))
    assert isinstance(maps, OrderedDict)
    assert [(k, tuple(v.shape)) for k, v in maps.items()] == [
        ('0', (1, 32, 24, 40)), ('1', (1, 32, 12, 20)), ('2', (1, 32, 6, 10)),
        ('3', (1, 32, 3, 5)), ('pool', (1, 32, 2, 3))]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r'backbone name \'resnet50\': expected "fastervit-ARCH"'):
        fpn_backbone('resnet50')
    with pytest.raises(ValueError, match="Unknown FasterViT arch '9'"):
        fpn_backbone('fastervit-9')
    with pytest.raises(TypeError, match='a built backbone is used as it is'):
        fpn_backbone(FasterViT('0'), frozen_stages=1)
    with pytest.raises(TypeError, match="needs one of the kit's backbones"):
        FPNBackbone(torch.nn.Conv2d(3, 8, 3))
