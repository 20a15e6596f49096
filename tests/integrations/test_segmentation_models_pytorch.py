"""segmentation_models_pytorch with FasterViT as a ``tu-`` encoder: Unet, FPN and UPerNet train on
non-square images and segment at another size; the published weights arrive through the kit."""
import pytest
import torch

smp = pytest.importorskip('segmentation_models_pytorch')
import fastervit_dense  # noqa: E402,F401 (registers fastervit_dense_* with timm)

ENCODER = 'tu-fastervit_dense_0'


def segmentation_loss(x, target):
    return lambda model: torch.nn.functional.cross_entropy(model(x), target)


@pytest.mark.training
@pytest.mark.parametrize('name', ['Unet', 'FPN', 'UPerNet'])
def test_trains_and_segments_at_another_size(name, train_steps):
    torch.manual_seed(0)
    model = getattr(smp, name)(ENCODER, encoder_weights=None, classes=3)
    assert model.encoder.out_channels[-4:] == [64, 128, 256, 512]
    x = torch.randn(2, 3, 160, 224)
    target = torch.zeros(2, 160, 224, dtype=torch.long)
    target[:, 40:120, 60:200] = 1
    target[:, 100:, :50] = 2
    x[:, 0] += target * 0.5
    losses = train_steps(model, segmentation_loss(x, target))
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 288)).shape == (1, 3, 96, 288)
        if name == 'Unet':  # SMP's Unet takes any size; FPN and UPerNet ask for multiples of 32
            assert model(torch.randn(1, 3, 150, 230)).shape == (1, 3, 150, 230)
        else:
            with pytest.raises(RuntimeError, match='Expected image height and width divisible '
                               'by 32'):
                model(torch.randn(1, 3, 150, 230))


def test_imagenet_weights_are_the_published_file(published_fastervit0):
    model = smp.Unet(ENCODER, encoder_weights='imagenet', classes=3)
    own = model.encoder.model.model.state_dict()
    loaded = [k for k in own if k in published_fastervit0]
    assert len(loaded) > 200
    for key in loaded:
        torch.testing.assert_close(own[key], published_fastervit0[key], rtol=0, atol=0)


def test_an_output_stride_fastervit_cannot_give_is_refused():
    with pytest.raises(ValueError, match='FasterViT has output stride 32 only, got '
                       'output_stride=16'):
        smp.DeepLabV3Plus(ENCODER, encoder_weights=None, encoder_output_stride=16)
