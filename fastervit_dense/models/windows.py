"""Tensor layout for windowed and carrier-token attention, as pure functions.

Shapes use B for the batch, C for channels, ``w`` for the window side, ``(n_h, n_w)`` for the window
grid and ``ct`` for the carrier tokens per window side. Size arithmetic uses only ``//``, ``%``, ``*``
and ``-`` on sizes read from tensors, so that under ``torch.jit.trace`` (and so in an ONNX export)
every grid follows the input instead of being frozen at the traced size.
"""
import torch
import torch.nn.functional as F

__all__ = [
    'pad_to_window_multiple', 'window_partition', 'window_reverse', 'carrier_grid_to_windows',
    'carrier_windows_to_grid', 'carrier_pooling_matrix'
]


def pad_to_window_multiple(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) map on the bottom and right to multiples of ``window_size``."""
    height, width = x.shape[-2], x.shape[-1]
    pad_b = (window_size - height % window_size) % window_size
    pad_r = (window_size - width % window_size) % window_size
    return F.pad(x, (0, pad_r, 0, pad_b))


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, C, n_h*w, n_w*w) -> (B*n_h*n_w, w*w, C), windows in row-major order, tokens row-major."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height // window_size, window_size, width // window_size,
                  window_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window_size * window_size, channels)


def window_reverse(windows: torch.Tensor, window_size: int, height, width) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B*n_h*n_w, w*w, C) -> (B, C, height, width)."""
    channels = windows.shape[-1]
    n_h, n_w = height // window_size, width // window_size
    x = windows.reshape(-1, n_h, n_w, window_size, window_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, channels, height, width)


def carrier_grid_to_windows(tokens: torch.Tensor, grid_h, grid_w, ct_size: int) -> torch.Tensor:
    """Regroups carrier tokens from image order to window order.

    (B, grid_h*grid_w, C) in row-major image order, with ``grid = n * ct_size`` per axis ->
    (B*n_h*n_w, ct*ct, C): each window's ct x ct tokens, row-major, windows row-major.
    """
    batch, _, channels = tokens.shape
    x = tokens.reshape(batch, grid_h // ct_size, ct_size, grid_w // ct_size, ct_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ct_size * ct_size, channels)


def carrier_windows_to_grid(tokens: torch.Tensor, grid_h, grid_w, ct_size: int) -> torch.Tensor:
    """Inverse of :func:`carrier_grid_to_windows`: (B*n_h*n_w, ct*ct, C) -> (B, grid_h*grid_w, C)."""
    channels = tokens.shape[-1]
    x = tokens.reshape(-1, grid_h // ct_size, grid_w // ct_size, ct_size, ct_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, grid_h * grid_w, channels)


def carrier_pooling_matrix(num_windows, window_size: int, ct_size: int, *, dtype: torch.dtype,
                           device: torch.device) -> torch.Tensor:
    """The average pooling that turns one axis of a padded stage map into carrier-token cells.

    Along an axis of ``n * w`` pixels there are ``n * ct`` cells. Cell ``i`` averages the pixels
    ``[i * s, i * s + k)`` with stride ``s = w // ct`` and kernel ``k = n * w - (n * ct - 1) * s``
    (for w=7, ct=2: s=3, k=n+3, so cells overlap and widen as the grid grows). This is the pooling
    the published FasterViT weights were trained with at their training size, extended to any grid.

    Returns a (cells, pixels) matrix ``P`` so that pooling is ``P @ x`` along that axis. Expressed as
    a matrix (rather than ``avg_pool2d``, whose kernel size would be a constant) it stays exact and
    traceable with input-dependent sizes.
    """
    stride = window_size // ct_size
    length = num_windows * window_size
    cells = num_windows * ct_size
    kernel = length - (cells - 1) * stride
    pixels = torch.arange(length, device=device)
    starts = torch.arange(cells, device=device) * stride
    inside = (pixels[None, :] >= starts[:, None]) & (pixels[None, :] < starts[:, None] + kernel)
    return inside.to(dtype) / kernel

