"""FLOP counting shared by the kit's analysis tools: mmengine's counter plus fused attention."""
import torch

__all__ = ['count_macs']


def _sdpa_macs(inputs, outputs):
    """Multiply-accumulates of ``scaled_dot_product_attention``: Q K^T and the weighted sum of V."""
    q, k, v = (i.type().sizes() for i in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= size
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_macs(module: torch.nn.Module, inputs: tuple) -> int:
    """Multiply-accumulates of one forward of ``module(*inputs)`` (mmengine counts MACs as
    "flops"); the fused attention op, which mmengine's counter skips, is counted too."""
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        analyzer.set_op_handle('aten::scaled_dot_product_attention', _sdpa_macs)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total()
