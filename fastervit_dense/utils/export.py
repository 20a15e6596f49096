"""ONNX export with dynamic batch, height and width: one file for every input size.

* :func:`export_onnx` traces a tensor-in, tensors-out module (a backbone, or a whole model wrapped
  to return tensors) with the TorchScript exporter at opset 17; :func:`compare_with_onnxruntime`
  runs the file at other sizes and compares it with PyTorch.
* ``adaptive_avg_pool2d`` (used by UperNet's pyramid pooling) has no ONNX form when the input size
  is dynamic. :class:`MatrixAdaptiveAvgPool2d` computes the same pooling as two matrix products
  whose matrices are built from the input's size, so the exported graph follows the input;
  :func:`make_exportable` swaps it in.

Backbones from the command line (FastViT is exported fused)::

    python tools/deployment/export_backbone.py fastervit-0 out.onnx [--checkpoint SOURCE]
        [--shape 224 224] [--verify 320x480,97x300]
"""
import inspect
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

from .sizes import parse_sizes

__all__ = ['MatrixAdaptiveAvgPool2d', 'make_exportable', 'export_onnx', 'compare_with_onnxruntime',
           'export_and_compare', 'build_backbone', 'parse_sizes']


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


def torchscript_exporter() -> dict:
    """Arguments that make ``torch.onnx.export`` use the TorchScript exporter, which traces the
    size arithmetic into the graph: torch >= 2.5 has a ``dynamo`` switch (on by default from 2.9),
    torch 2.4 only the TorchScript exporter."""
    return {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(module: nn.Module, path, shape: Sequence[int] = (224, 224), opset: int = 17
                ) -> List[str]:
    """Exports ``module`` (image ``x`` (B, 3, H, W) -> a tensor or a tuple of (B, C, h, w) tensors)
    with batch, height and width dynamic in the input and every output. Returns the output names."""
    module.eval()
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        outputs = module(x)
    num_outputs = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    names = [f'out{i}' for i in range(num_outputs)]
    axes = {'x': {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({n: {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'} for n in names})
    torch.onnx.export(module, x, str(path), input_names=['x'], output_names=names,
                      dynamic_axes=axes, opset_version=opset, **torchscript_exporter())
    return names


def compare_with_onnxruntime(module: nn.Module, path, sizes: Sequence[Tuple[int, int]],
                             seed: int = 0) -> dict:
    """``'HxW' -> largest difference / largest magnitude`` of the file's outputs (onnxruntime, CPU)
    against ``module``'s on the same random image, at each size."""
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(seed)
    errors = {}
    for height, width in sizes:
        x = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = module(x)
        expected = expected if isinstance(expected, (tuple, list)) else [expected]
        outputs = session.run(None, {'x': x.numpy()})
        if len(outputs) != len(expected) or any(o.shape != tuple(e.shape)
                                                for o, e in zip(outputs, expected)):
            raise RuntimeError(f'{path} at {height}x{width}: output shapes '
                               f'{[o.shape for o in outputs]} differ from PyTorch\'s '
                               f'{[tuple(e.shape) for e in expected]}')
        errors[f'{height}x{width}'] = max(
            float(np.abs(o - e.numpy()).max() / max(np.abs(e.numpy()).max(), 1e-12))
            for o, e in zip(outputs, expected))
    return errors


def build_backbone(name: str, checkpoint=None) -> nn.Module:
    """``'fastervit-<arch>'`` or ``'fastvit-<arch>'`` in eval mode, with raw stage outputs, loaded
    from ``checkpoint`` (a path, URL or hf-hub id) when given; FastViT fused."""
    from ..models import backbone_class
    cls, arch = backbone_class(name)
    model = cls(arch, out_norm_cfg=None)
    if checkpoint:
        model.load_pretrained(checkpoint)
    if hasattr(model, 'switch_to_deploy'):
        model.switch_to_deploy()
    return model.eval()


def export_and_compare(module: nn.Module, path, shape: Sequence[int], sizes, what: str) -> str:
    """The backbone export of the command lines: writes ``path`` traced at ``shape``, compares it
    with PyTorch at ``sizes``, and returns the report, one line per size."""
    names = export_onnx(module, path, shape)
    lines = [f'exported {what} to {path} (outputs: {", ".join(names)}; dynamic batch, height and '
             'width)']
    for size, error in compare_with_onnxruntime(module, path, sizes).items():
        lines.append(f'  onnxruntime vs PyTorch at {size}: max relative difference {error:.2e}')
    return '\n'.join(lines)
