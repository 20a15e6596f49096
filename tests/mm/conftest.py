import pytest
from demo_models import build, demo_config, threads, train, train_segmentor


@pytest.fixture(scope='session')
def mask_rcnn_weights(tiny_data):
    """The demo Mask R-CNN (FastViT-T8) after 40 training steps (one thread): its unfused state
    dict."""
    with threads(1):
        model = train(build(demo_config()), tiny_data, iters=40, seed=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope='session')
def segmentor_checkpoint(tiny_data, tmp_path_factory):
    """The demo segmentor (Semantic FPN, FasterViT-0) after 60 training steps: its checkpoint."""
    return train_segmentor(tiny_data, tmp_path_factory.mktemp('segmentor'))
