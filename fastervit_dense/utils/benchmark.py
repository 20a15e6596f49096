"""Measurement helpers shared by the kit's benchmark tools: memory readers and size parsing."""
import resource

import torch

__all__ = ['process_memory_mib', 'peak_mib', 'parse_size']


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


def parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise SystemExit(f'bad size {text!r}: expected HxW, e.g. 576x960') from None
    return height, width
