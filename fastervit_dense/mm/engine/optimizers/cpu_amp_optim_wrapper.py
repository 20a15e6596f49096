"""Mixed precision for training on a CPU: bfloat16 autocast.

mmengine's ``AmpOptimWrapper`` (what ``--amp`` selects on a GPU) refuses to run without an
accelerator. On a CPU, float16 brings no speed, but bfloat16 does wherever the processor has
bfloat16 matrix instructions (AMX, AVX512-BF16), and it keeps float32's exponent range, so no loss
scaling is needed: parameters, gradients and the optimizer stay in float32, and convolutions and
matrix products inside the forward pass run in bfloat16.

mmcv's compiled CPU operators (NMS, RoIAlign, ...) take float32 only, so detectors autocast just
their backbone and neck (``autocast_modules=('backbone', 'neck')``), whose outputs return to
float32 before the heads.
"""
import os
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) under which it still runs bfloat16 matrix
# products in hardware: on AMX, or with AVX512-BF16 (the older spelling DNNL_MAX_CPU_ISA too).
_AMX_CAPS = ('AVX512_CORE_AMX', 'AVX512_CORE_AMX_FP16', 'AVX10_1_512_AMX', 'AVX10_1_512_AMX_FP16',
             'AVX10_2_512_AMX_2', 'ALL')
_AVX512_BF16_CAPS = _AMX_CAPS + ('AVX512_CORE_BF16', 'AVX512_CORE_FP16', 'AVX10_1_512',
                                 'AVX10_2_512')


def bfloat16_instructions() -> Optional[str]:
    """The bfloat16 matrix instructions that oneDNN (PyTorch's CPU kernels for convolutions and
    bfloat16 matrix products) uses here: ``'AMX'``, ``'AVX512-BF16'``, or None where the CPU has
    neither and bfloat16 is emulated, slower than float32. A cap set with ``ONEDNN_MAX_CPU_ISA``
    (or ``DNNL_MAX_CPU_ISA``) is taken into account, as oneDNN itself does."""
    cap = (os.environ.get('ONEDNN_MAX_CPU_ISA') or os.environ.get('DNNL_MAX_CPU_ISA')
           or 'ALL').strip().upper()
    if getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)() and cap in _AMX_CAPS:
        return 'AMX'
    has_avx512_bf16 = getattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)()
    if has_avx512_bf16 and cap in _AVX512_BF16_CAPS:
        return 'AVX512-BF16'
    return None


def cpu_bf16_is_fast() -> bool:
    """Whether bfloat16 runs on matrix instructions here (:func:`bfloat16_instructions`)."""
    return bfloat16_instructions() is not None


def _to_float(output):
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype == torch.bfloat16 else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float(o) for o in output)
    if isinstance(output, dict):
        return {k: _to_float(v) for k, v in output.items()}
    return output


class _SubmoduleAutocast:
    """Forward hooks that run one submodule under autocast and hand float32 outputs on."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.active = False
        self._contexts = []

    def before(self, module, args):
        if self.active:
            context = torch.autocast('cpu', dtype=self.dtype)
            context.__enter__()
            self._contexts.append(context)

    def after(self, module, args, output):
        if self.active and self._contexts:
            self._contexts.pop().__exit__(None, None, None)
            return _to_float(output)
        return None

    def close(self):
        """Leaves autocast contexts a submodule that raised never closed."""
        self.active = False
        while self._contexts:
            self._contexts.pop().__exit__(None, None, None)


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose training forward passes (``optim_context``, i.e. ``train_step``) run
    under ``torch.autocast('cpu', dtype=torch.bfloat16)``: the whole model, or only the submodules
    named in ``autocast_modules`` (attribute names of the model, e.g. ``('backbone', 'neck')``).
    Validation and testing stay in float32."""

    def __init__(self, dtype='bfloat16', autocast_modules: Optional[Sequence[str]] = None,
                 **kwargs):
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper runs bfloat16 autocast, got dtype={dtype!r}: '
                             'float16 autocast needs a GPU (AmpOptimWrapper)')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16
        self.autocast_modules = tuple(autocast_modules) if autocast_modules else None
        self._hooks = None

    def _submodule_hooks(self, model):
        if self._hooks is None:
            model = getattr(model, 'module', model)  # (MM)DistributedDataParallel
            hooks = _SubmoduleAutocast(self.cast_dtype)
            for name in self.autocast_modules:
                submodule = getattr(model, name, None)
                if not isinstance(submodule, torch.nn.Module):
                    raise ValueError(f'CPUAmpOptimWrapper: autocast_modules names {name!r}, which '
                                     f'{type(model).__name__} does not have (its submodules: '
                                     f'{", ".join(n for n, _ in model.named_children())})')
                submodule.register_forward_pre_hook(hooks.before)
                submodule.register_forward_hook(hooks.after)
            self._hooks = hooks
        return self._hooks

    @contextmanager
    def optim_context(self, model):
        if self.autocast_modules is None:
            with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
                yield
            return
        hooks = self._submodule_hooks(model)
        with super().optim_context(model):
            hooks.active = True
            try:
                yield
            finally:
                hooks.close()
