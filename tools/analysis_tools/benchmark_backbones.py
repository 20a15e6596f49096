"""Speed, memory and FLOPs of the kit's backbones next to their peers, measured side by side.

For each backbone and input size it measures, in one run:
  * forward latency (median of --repeat timed calls after --warmup), images per second;
  * FLOPs (mmengine's counter, in multiply-accumulates, with fused attention counted) and the
    achieved rate next to this machine's float32 matrix-multiply rate, measured in the same rounds
    as the models (a 2048^3 matmul timed in alternation with them), so a slow spell of the machine
    slows both;
  * peak memory: CUDA's peak allocation, or on CPU the peak resident memory of a fresh process that
    builds the model and runs it (so cases do not inherit each other's peaks);
  * the peers: the official ``fastervit`` any-res model built for each size (recording sizes where it
    cannot run), mmdet's Swin-T, timm's ``features_only`` FastViT, and for FastViT the fused form.
Peer timings interleave with ours (ours, peer, ours, peer, ...) so drift on a shared machine hits
both alike; ratios are ours / peer.

Example (the figures in docs/benchmarks.md)::

    python tools/analysis_tools/benchmark_backbones.py \
        --backbones fastervit-0,fastervit-2,fastvit-sa12 --sizes 576x960,512x512 --repeat 5

Writes ``OUT/benchmark.json`` (one record per backbone and size) and ``OUT/benchmark.md``.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
import warnings

import torch

from fastervit_dense.utils.benchmark import peak_mib
from fastervit_dense.utils.sizes import parse_sizes

warnings.filterwarnings('ignore')


DEFAULT_SIZES = '224x224,512x512,576x960,800x1333'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbones', default='fastervit-0,fastervit-2,fastvit-sa12',
                        help='comma list: fastervit-<arch>, fastvit-<arch>, swin-t')
    parser.add_argument('--sizes', default=DEFAULT_SIZES, help='comma list of HxW')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all)')
    parser.add_argument('--dtype', choices=['float32', 'bfloat16'], default='float32')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--window-size', default=None,
                        help='FasterViT windows for ours and the official peer, e.g. 7,7,12,6')
    parser.add_argument('--peers', default='official,swin-t,timm,fused',
                        help='which peers to measure (subset of official,swin-t,timm,fused)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory processes')
    parser.add_argument('--no-flops', action='store_true', help='skip FLOP counting')
    parser.add_argument('--out', default='work_dirs/benchmarks')
    parser.add_argument('--memory-worker', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ model builders
def build(name, size, window_size=None, fused=False):
    """A backbone in eval mode by benchmark name; peers use the same names with a prefix."""
    import fastervit_dense  # noqa: F401
    kind, _, arch = name.partition('-')
    if name.startswith('official-fastervit-'):
        from fastervit_dense.testing.reference import official_fastervit
        kwargs = dict(window_size=window_size) if window_size else {}
        return official_fastervit(name[len('official-fastervit-'):], size, **kwargs)
    if kind == 'fastervit':
        kwargs = dict(window_size=window_size) if window_size else {}
        return fastervit_dense.FasterViT(arch, out_norm_cfg=None, **kwargs).eval()
    if kind == 'fastvit':
        model = fastervit_dense.FastViT(arch, out_norm_cfg=None).eval()
        return model.switch_to_deploy() if fused else model
    if name == 'timm-fastvit' or kind == 'timm':
        import timm
        return timm.create_model(f'fastvit_{arch.split("-", 1)[1]}', features_only=True).eval()
    if name == 'swin-t':
        from mmdet.models.backbones import SwinTransformer
        model = SwinTransformer(out_indices=(0, 1, 2, 3))
        model.eval()
        return model
    raise SystemExit(f'unknown backbone {name!r}: use fastervit-<arch>, fastvit-<arch> or swin-t')


def peers_of(name, wanted):
    kind, _, arch = name.partition('-')
    peers = []
    if kind == 'fastervit' and 'official' in wanted:
        peers.append(('official', f'official-fastervit-{arch}', {}))
    if kind == 'fastvit' and 'timm' in wanted:
        peers.append(('timm', f'timm-fastvit-{arch}', {}))
    if kind == 'fastvit' and 'fused' in wanted:
        peers.append(('fused', name, dict(fused=True)))
    if name != 'swin-t' and 'swin-t' in wanted:
        peers.append(('swin-t', 'swin-t', {}))
    return peers


# ------------------------------------------------------------------------------ measurements
def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def run_once(model, x, dtype, device):
    with torch.no_grad():
        if dtype == torch.bfloat16:
            with torch.autocast(device, dtype=torch.bfloat16):
                model(x)
        else:
            model(x)
    sync(device)


def interleaved_latency(models, x, dtype, device, repeat, warmup):
    """Median seconds per forward for each model, timed in alternation."""
    for model in models:
        for _ in range(warmup):
            run_once(model, x, dtype, device)
    times = [[] for _ in models]
    for _ in range(repeat):
        for i, model in enumerate(models):
            start = time.perf_counter()
            run_once(model, x, dtype, device)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


class MatmulProbe(torch.nn.Module):
    """Times like a model in :func:`interleaved_latency`: one float32 2048^3 matrix multiply."""

    size = 2048

    def __init__(self, device):
        super().__init__()
        self.a = torch.randn(self.size, self.size, device=device)
        self.b = torch.randn(self.size, self.size, device=device)

    def forward(self, x):
        with torch.autocast(self.a.device.type, enabled=False):
            return torch.matmul(self.a, self.b)

    def rate(self, seconds: float) -> float:
        return 2 * self.size**3 / seconds


def peak_memory(args, name, size, extra):
    """Peak memory (MiB) of one forward in a fresh process (CPU) or CUDA's peak allocation."""
    job = json.dumps(dict(name=name, size=size, extra=extra))
    cmd = [sys.executable, osp.abspath(__file__), '--memory-worker', job, '--batch-size',
           str(args.batch_size), '--dtype', args.dtype, '--device', args.device]
    if args.window_size:
        cmd += ['--window-size', args.window_size]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])['peak_mib']


def memory_worker(args):
    job = json.loads(args.memory_worker)
    dtype = getattr(torch, args.dtype)
    model = build(job['name'], tuple(job['size']), window_sizes(args), **job['extra']).to(args.device)
    x = torch.randn(args.batch_size, 3, *job['size'], device=args.device)
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    run_once(model, x, dtype, args.device)
    print(json.dumps(dict(peak_mib=peak_mib(args.device))))


def window_sizes(args):
    return [int(v) for v in args.window_size.split(',')] if args.window_size else None


# ------------------------------------------------------------------------------ report
def allocator_settings() -> dict:
    """glibc allocator settings in effect: on CPU they decide whether large freed tensors go back to
    the kernel, whose zeroing of fresh pages then costs up to a tenth of a forward pass."""
    return {k: v for k, v in os.environ.items() if k.startswith('MALLOC_') or k == 'LD_PRELOAD'}


def markdown(records):
    allocator = ', '.join(f'{k}={v}' for k, v in allocator_settings().items()) or 'glibc defaults'
    rates = [r['matmul_gflops'] for r in records]
    lines = [f'Matrix-multiply rate (measured with each case): {min(rates):.0f}-{max(rates):.0f} '
             f'GFLOP/s; allocator: {allocator}', '',
             '| backbone | size | latency ms | img/s | GMACs | achieved / matmul | peak MiB | '
             'peers (latency ms, ours/peer) |', '|---|---|---|---|---|---|---|---|']
    for r in records:
        peers = '; '.join(
            f'{p}: ' + (f'{v["latency_ms"]:.0f} ms, {v["ratio"]:.2f}x' if 'latency_ms' in v
                        else v['error']) for p, v in r['peers'].items()) or '-'
        gmacs = f'{r["gmacs"]:.2f}' if r.get('gmacs') else '-'
        frac = f'{r["achieved_fraction"]:.2f}' if r.get('achieved_fraction') else '-'
        mem = f'{r["peak_mib"]:.0f}' if r.get('peak_mib') else '-'
        lines.append(f'| {r["backbone"]} | {r["size"]} | {r["latency_ms"]:.0f} | '
                     f'{r["images_per_s"]:.2f} | {gmacs} | {frac} | {mem} | {peers} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        return memory_worker(args)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available here')
    from mmengine.utils import ProgressBar

    from fastervit_dense.mm.flops import count_macs

    dtype = getattr(torch, args.dtype)
    names = [n.strip() for n in args.backbones.split(',') if n.strip()]
    sizes = parse_sizes(args.sizes)
    wanted = set(args.peers.split(','))
    probe = MatmulProbe(args.device)
    records = []
    progress = ProgressBar(len(names) * len(sizes))
    for name in names:
        for size in sizes:
            x = torch.randn(args.batch_size, 3, *size, device=args.device)
            ours = build(name, size, window_sizes(args)).to(args.device)
            peer_models, peer_errors = [], {}
            for label, peer_name, extra in peers_of(name, wanted):
                try:
                    peer = build(peer_name, size, window_sizes(args), **extra).to(args.device)
                    run_once(peer, x, dtype, args.device)
                    peer_models.append((label, peer_name, extra, peer))
                except Exception as error:  # a peer that cannot run this size is a result
                    peer_errors[label] = dict(error=f'cannot run: {str(error).splitlines()[0][:80]}')
            latencies = interleaved_latency([ours] + [p[3] for p in peer_models] + [probe], x,
                                            dtype, args.device, args.repeat, args.warmup)
            rate = probe.rate(latencies.pop())
            record = dict(backbone=name, size=f'{size[0]}x{size[1]}', batch_size=args.batch_size,
                          dtype=args.dtype, device=args.device, threads=torch.get_num_threads(),
                          latency_ms=latencies[0] * 1e3,
                          images_per_s=args.batch_size / latencies[0],
                          matmul_gflops=rate / 1e9, peers={})
            if not args.no_flops:
                macs = count_macs(ours, (x, ))
                record['gmacs'] = macs / 1e9
                record['achieved_gflops'] = 2 * macs / latencies[0] / 1e9
                record['achieved_fraction'] = 2 * macs / latencies[0] / rate
            if not args.no_memory:
                record['peak_mib'] = peak_memory(args, name, size, {})
            for (label, peer_name, extra, _), latency in zip(peer_models, latencies[1:]):
                entry = dict(latency_ms=latency * 1e3, ratio=latencies[0] / latency)
                if not args.no_memory:
                    entry['peak_mib'] = peak_memory(args, peer_name, size, extra)
                record['peers'][label] = entry
            record['peers'].update(peer_errors)
            records.append(record)
            del ours, peer_models
            progress.update()
    print()
    os.makedirs(args.out, exist_ok=True)
    result = dict(command=' '.join(sys.argv),
                  allocator=allocator_settings(), records=records)
    with open(osp.join(args.out, 'benchmark.json'), 'w') as f:
        json.dump(result, f, indent=2)
    table = markdown(records)
    with open(osp.join(args.out, 'benchmark.md'), 'w') as f:
        f.write(table)
    print(table)
    print(f'written: {osp.join(args.out, "benchmark.json")}, {osp.join(args.out, "benchmark.md")}')


if __name__ == '__main__':
    main()
