import os

import pytest

from fastervit_dense import FasterViT


@pytest.fixture
def published_fastervit0(isolated_downloads, official_fastervit0_checkpoint, monkeypatch):
    """FasterViT-0's published file (random weights in its layout) where the kit caches the
    published URL, and every download switched off: ``pretrained=True`` must find it there.
    Returns the file's weights."""
    import torch
    os.makedirs(isolated_downloads, exist_ok=True)
    data = open(official_fastervit0_checkpoint, 'rb').read()
    (isolated_downloads / os.path.basename(FasterViT.published_weights('0'))).write_bytes(data)
    monkeypatch.setenv('FASTERVIT_DENSE_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    return torch.load(official_fastervit0_checkpoint, weights_only=False)['state_dict']
