"""Continuous position terms of FasterViT, evaluated for whatever grid the input produces.

Both terms are small MLPs over coordinates, so no learnable tensor depends on the input size and a
bias or embedding can be evaluated for any window or carrier grid. Module and parameter names
(``cpb_mlp.0``, ``cpb_mlp.2``) follow the published checkpoints so that their weights load as they are.
"""
import torch
import torch.nn as nn

__all__ = ['RelativePositionBias', 'PositionEmbeddingMLP']


def _at_least_one(value):
    """max(value, 1) for a Python int or, under tracing, a 0-dim tensor."""
    if isinstance(value, torch.Tensor):
        return value.clamp(min=1)
    return max(value, 1)


class RelativePositionBias(nn.Module):
    """SwinV2-style continuous relative position bias over a ``grid_h x grid_w`` token grid.

    Relative offsets are scaled by ``grid - 1`` per axis, times 8, log-spaced
    (``sign(x) * log2(1 + |x|) / 3``), passed through ``Linear(2, 512)-ReLU-Linear(512, heads)`` and
    squashed to ``16 * sigmoid``. The MLP runs once per distinct offset, ``(2h-1)(2w-1)`` rows, and the
    result is gathered into the (heads, N, N) bias.
    """

    def __init__(self, num_heads: int, hidden_dim: int = 512):
        super().__init__()
        self.num_heads = num_heads
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, hidden_dim, bias=True), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_heads, bias=False))

    def forward(self, grid_h, grid_w) -> torch.Tensor:
        weight = self.cpb_mlp[0].weight
        device = weight.device
        offsets_h = torch.arange(1 - grid_h, grid_h, device=device, dtype=torch.float32)
        offsets_w = torch.arange(1 - grid_w, grid_w, device=device, dtype=torch.float32)
        table = torch.stack(torch.meshgrid(offsets_h / _at_least_one(grid_h - 1),
                                           offsets_w / _at_least_one(grid_w - 1), indexing='ij'),
                            dim=-1) * 8
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0
        # The squashing is elementwise, so it runs on the table of distinct offsets before the
        # gather; gathering along the offsets of the (heads, offsets) table yields (heads, N, N)
        # in order.
        bias_table = 16 * torch.sigmoid(self.cpb_mlp(table.to(weight.dtype)))
        bias_table = bias_table.reshape(-1, self.num_heads).transpose(0, 1).contiguous()

        coords = torch.stack(torch.meshgrid(torch.arange(grid_h, device=device),
                                            torch.arange(grid_w, device=device), indexing='ij'))
        coords = coords.flatten(1)
        relative = coords[:, :, None] - coords[:, None, :]
        index = (relative[0] + grid_h - 1) * (2 * grid_w - 1) + (relative[1] + grid_w - 1)
        num_tokens = coords.shape[1]
        bias = torch.index_select(bias_table, 1, index.reshape(-1))
        return bias.reshape(self.num_heads, num_tokens, num_tokens)


class PositionEmbeddingMLP(nn.Module):
    """Additive position embedding for a ``grid_h x grid_w`` token grid (tokens row-major).

    Per axis of side ``s`` the coordinate of index ``i`` is ``(i - s // 2) / (s // 2)``
    (``coords='side'``, as the ImageNet classifiers were trained); the pair goes through
    ``Linear(2, 512)-ReLU-Linear(512, dim)``. Returns (1, grid_h * grid_w, dim).

    ``coords='tokens'`` centres and scales both axes by half the token count instead,
    ``(i - n // 2) / (n // 2)`` with ``n = grid_h * grid_w`` (so a 7x7 window spans [-1, -0.75]): the
    coordinates FasterViT's DINO detectors were trained with (NVlabs/FasterViT
    ``downstream/object_detection/dino``), which their published weights need.
    """

    COORDS = ('side', 'tokens')

    def __init__(self, dim: int, hidden_dim: int = 512, coords: str = 'side'):
        super().__init__()
        if coords not in self.COORDS:
            raise ValueError(f'position-embedding coords must be one of {self.COORDS}, got '
                             f'{coords!r}')
        self.coords = coords
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, hidden_dim, bias=True), nn.ReLU(),
            nn.Linear(hidden_dim, dim, bias=False))

    def forward(self, grid_h, grid_w) -> torch.Tensor:
        weight = self.cpb_mlp[0].weight
        rows = torch.arange(grid_h, device=weight.device, dtype=torch.float32)
        cols = torch.arange(grid_w, device=weight.device, dtype=torch.float32)
        if self.coords == 'tokens':
            half_h = half_w = grid_h * grid_w // 2
        else:
            half_h, half_w = grid_h // 2, grid_w // 2
        rows = (rows - half_h) / _at_least_one(half_h)
        cols = (cols - half_w) / _at_least_one(half_w)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).reshape(1, -1, 2)
        return self.cpb_mlp(coords.to(weight.dtype))
