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


@pytest.fixture
def train_steps():
    return _train_steps


def _train_steps(model, step, steps=3, lr=2e-4):
    """Runs ``steps`` AdamW steps of ``step(model) -> loss`` on one batch; checks every loss is
    finite, that the backbone's first weight gets a gradient and moves. Returns the losses."""
    import torch
    stem = next(p for n, p in model.named_parameters() if 'patch_embed.conv_down.0' in n)
    before = stem.detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = step(model)
        assert torch.isfinite(loss), loss
        optimizer.zero_grad()
        loss.backward()
        assert stem.grad is not None and stem.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert not torch.equal(stem, before)
    return losses
