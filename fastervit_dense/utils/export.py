"""Helpers that make whole models exportable to ONNX with dynamic height and width.

``adaptive_avg_pool2d`` (used by UperNet's pyramid pooling) has no ONNX form when the input size is
dynamic. :class:`MatrixAdaptiveAvgPool2d` computes the same pooling as two matrix products whose
matrices are built from the input's size, so the exported graph follows the input.
"""
import torch
import torch.nn as nn

__all__ = ['MatrixAdaptiveAvgPool2d', 'make_exportable']


def adaptive_pooling_matrix(length, cells: int, dtype, device) -> torch.Tensor:
    """(cells, length): row i averages ``[floor(i*L/cells), ceil((i+1)*L/cells))``, as PyTorch's
    adaptive average pooling does."""
    positions = torch.arange(length, device=device)
    index = torch.arange(cells, device=device)
    starts = (index * length) // cells
    ends = ((index + 1) * length + cells - 1) // cells
    inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < ends[:, None])
    inside = inside.to(dtype)
    return inside / inside.sum(1, keepdim=True)


class MatrixAdaptiveAvgPool2d(nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d`` with an integer or (h, w) output size."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if any(s is None for s in output_size):
            raise ValueError('MatrixAdaptiveAvgPool2d needs explicit output sizes')
        self.output_size = tuple(output_size)

    def forward(self, x):
        rows = adaptive_pooling_matrix(x.shape[-2], self.output_size[0], x.dtype, x.device)
        cols = adaptive_pooling_matrix(x.shape[-1], self.output_size[1], x.dtype, x.device)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def make_exportable(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.AdaptiveAvgPool2d`` in ``model`` (in place) by the matrix form."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(model, name, MatrixAdaptiveAvgPool2d(child.output_size))
        else:
            make_exportable(child)
    return model
