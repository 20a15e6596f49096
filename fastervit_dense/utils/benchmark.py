"""Measurement helpers shared by the kit's benchmark tools and the demo: memory readers, size
parsing (:mod:`.sizes`), and the machine a figure was measured on."""
import os
import platform
import resource

import torch

from .sizes import parse_size

__all__ = ['process_memory_mib', 'peak_mib', 'parse_size', 'cpu_model', 'instruction_set_caps']


def process_memory_mib(field: str = 'VmHWM') -> float:
    """This process's own resident memory from /proc: its peak (``VmHWM``) or current size
    (``VmRSS``). ru_maxrss is not usable for the peak: Linux keeps it across exec, so a child started
    by a large parent would report the parent's peak."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    if field == 'VmHWM':
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raise RuntimeError(f'/proc/self/status has no {field}')


def peak_mib(device: str) -> float:
    """Peak memory so far: CUDA's peak allocation, or this process's peak resident memory."""
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20
    return process_memory_mib('VmHWM')


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), e.g. 'AMD EPYC 9R14 96-Core
    Processor'; figures measured on a CPU depend on it."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown'


#: Environment variables that cap the instruction sets PyTorch's CPU kernels use: oneDNN's
#: (convolutions, bfloat16 matrix products), MKL's (float32 matrix products) and ATen's own.
INSTRUCTION_SET_CAPS = ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS',
                        'ATEN_CPU_CAPABILITY')


def instruction_set_caps() -> dict:
    """The instruction-set caps set in this process's environment ({} when none is)."""
    return {name: os.environ[name] for name in INSTRUCTION_SET_CAPS if os.environ.get(name)}
