import contextlib
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: files at least this large that a test leaves under its ``tmp_path`` are deleted after it
LARGE_FILE_BYTES = 16 * 2**20


@pytest.fixture(autouse=True)
def _delete_large_files(request):
    """After each test, the large files it wrote under its ``tmp_path`` (exported models,
    checkpoints) are deleted, so a full run's disk stays small on any CI machine; pytest's
    ``tmp_path_retention_policy = failed`` (setup.cfg) removes the rest of a passing test's folder
    at the end of the session."""
    yield
    folder = getattr(request.node, 'funcargs', {}).get('tmp_path')
    if folder is None or not os.path.isdir(folder):
        return
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path) and os.path.getsize(path) >= LARGE_FILE_BYTES:
                    os.remove(path)
            except OSError:
                pass


@pytest.fixture(scope='session')
def official_fastervit0_checkpoint(tmp_path_factory):
    """An official FasterViT-0 checkpoint file (224, windows 7) with random, branch-exercising
    weights, in the published training-checkpoint layout."""
    from fastervit_dense.testing.reference import official_fastervit, randomize_, save_official_checkpoint
    model = randomize_(official_fastervit('0', (224, 224)), seed=1)
    path = tmp_path_factory.mktemp('official') / 'fastervit_0_224_1k.pth.tar'
    return save_official_checkpoint(model, path)


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """Small generated COCO-format (``coco/``) and ADE20K-layout (``ade/``) datasets: 8 training
    and 4 validation images of 128-200 px, for the tools' end-to-end runs."""
    from fastervit_dense.mm.synthetic import make_datasets
    root = tmp_path_factory.mktemp('data')
    make_datasets(str(root), num_train=8, num_val=4, seed=3, size_range=(128, 200))
    return root


@pytest.fixture
def server():
    """A file server on 127.0.0.1 (``fastervit_dense.testing.servers.FileServer``), shut down after
    the test."""
    from fastervit_dense.testing.servers import FileServer
    running = FileServer()
    try:
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def isolated_downloads(tmp_path, monkeypatch):
    """Downloads of this test go to ``tmp_path/torch_home`` and to loopback servers only: no
    offline variables, no proxies. Returns torch hub's checkpoint cache folder."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None, raising=False)  # in case set_dir() was called
    for name in ('FASTERVIT_DENSE_OFFLINE', 'HF_HUB_OFFLINE', 'TORCH_HUB', 'LOCAL_RANK',
                 'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    # urllib's default opener keeps the proxies it saw first; no_proxy is read on every request.
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


@pytest.fixture
def fake_cpu(monkeypatch):
    """``fake_cpu(amx, avx512_bf16, cap=None)``: what ``torch.cpu`` reports about bfloat16
    instructions, and oneDNN's instruction-set cap (``ONEDNN_MAX_CPU_ISA``), for this test."""
    def configure(amx: bool, avx512_bf16: bool, cap=None):
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx, raising=False)
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx512_bf16,
                            raising=False)
        monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
        monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
        if cap:
            monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', cap)
    return configure


def _saved_for_backward(model, x):
    """Storages autograd keeps from a forward pass of ``model`` on ``x``: {data pointer: (bytes,
    shape)}."""
    found = {}

    def pack(t):
        found[t.untyped_storage().data_ptr()] = (t.untyped_storage().nbytes(), tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return found


@pytest.fixture
def saved_for_backward():
    """``saved_for_backward(model, x)``: the storages autograd keeps for the backward pass."""
    return _saved_for_backward


def _train_steps(model, step, watched=None, steps=3, optimizer=None):
    """Runs ``steps`` optimizer steps of ``step(model) -> loss`` on one batch (AdamW, lr 2e-4,
    unless ``optimizer`` is given); checks every loss is finite and that ``watched`` (by default
    FasterViT's first weight) gets a gradient and moves. Returns the losses."""
    if watched is None:
        watched = next(p for n, p in model.named_parameters() if 'patch_embed.conv_down.0' in n)
    before = watched.detach().clone()
    if optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    losses = []
    for _ in range(steps):
        loss = step(model)
        assert torch.isfinite(loss), loss
        optimizer.zero_grad()
        loss.backward()
        assert watched.grad is not None and watched.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert not torch.equal(watched, before)
    return losses


@pytest.fixture
def train_steps():
    """``train_steps(model, step, watched=None, steps=3, optimizer=None)``: see _train_steps."""
    return _train_steps



def _manager_classes():
    """mmengine's classes of named instances (MessageHub, MMLogger, Visualizer, DefaultScope, ...);
    none in the core's environment, which has no mmengine."""
    try:
        from mmengine.utils import ManagerMixin
    except ImportError:
        return []
    classes, queue = [], [ManagerMixin]
    while queue:
        cls = queue.pop()
        classes.append(cls)
        queue.extend(cls.__subclasses__())
    return [cls for cls in classes if '_instance_dict' in vars(cls)]


@contextlib.contextmanager
def _without_named_instances():
    """mmengine's named instances put aside inside, as a new interpreter starts without them
    (a config's ``visualizer = dict(name='visualizer', ...)`` would otherwise get the one an
    earlier test built, with its deleted folder), and restored afterwards; the loggers made
    inside have their files closed."""
    import logging
    saved = {cls: dict(cls._instance_dict) for cls in _manager_classes()}
    for cls in saved:
        cls._instance_dict.clear()
    try:
        yield
    finally:
        for cls in _manager_classes():
            for instance in cls._instance_dict.values():
                if isinstance(instance, logging.Logger):
                    for handler in list(instance.handlers):
                        handler.close()
                        instance.removeHandler(handler)
            cls._instance_dict.clear()
            cls._instance_dict.update(saved.get(cls, {}))


def _script_command(script, *args, cwd=ROOT, env=None, new_interpreter=False, timeout=900):
    """``python SCRIPT ARGS`` from ``cwd`` with ``env`` added to the environment: the exit status
    and what it printed, as ``subprocess.run(..., capture_output=True, text=True)`` gives them.

    By default it runs in this process (``runpy`` as ``__main__``): an uncaught exception gives
    status 1 and its traceback on stderr, as the interpreter would; the working folder,
    environment, ``sys.argv``, ``sys.path``, torch's thread count, deterministic-algorithms switch
    and random generators (torch, numpy, random) are restored afterwards, and mmengine's named
    instances are put aside while it runs (``_without_named_instances``). That saves the 15-20 s
    of imports a new interpreter pays on a 2-core CPU. ``new_interpreter=True`` starts
    ``python SCRIPT ARGS`` as a user does (``SCRIPT`` may then be ``-c`` or ``-m``), within
    ``timeout`` seconds: each script is started that way by at least one test."""
    import io
    import random
    import runpy
    import subprocess
    import sys
    import traceback
    import types

    import numpy as np
    if new_interpreter:
        return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                              text=True, cwd=cwd, env=dict(os.environ, **(env or {})),
                              timeout=timeout)
    path = script if os.path.isabs(script) else os.path.join(str(cwd), script)
    saved = (os.getcwd(), dict(os.environ), sys.argv, list(sys.path), torch.get_num_threads())
    generators = (torch.get_rng_state(), np.random.get_state(), random.getstate(),
                  torch.are_deterministic_algorithms_enabled())
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(cwd)
        os.environ.update(env or {})
        sys.argv = [path, *map(str, args)]
        sys.path.insert(0, os.path.dirname(path))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                _without_named_instances():
            try:
                runpy.run_path(path, run_name='__main__')
                code = 0
            except SystemExit as exit_:
                code = exit_.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
                code = code or 0
            except Exception:  # noqa: BLE001 (reported as the interpreter reports it)
                traceback.print_exc()
                code = 1
    finally:
        cwd_before, environ, sys.argv, search_path, threads = saved
        sys.path[:] = search_path
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        torch.set_rng_state(generators[0])
        np.random.set_state(generators[1])
        random.setstate(generators[2])
        torch.use_deterministic_algorithms(generators[3])
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture
def script_command():
    return _script_command


def _script_output(script, *args, **options):
    """``_script_command`` that must succeed: what the script printed (stdout, then stderr)."""
    result = _script_command(script, *args, **options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture
def script_output():
    return _script_output


def _converter_command(script, *args, **options):
    """tools/model_converters/``script`` run as ``_script_command`` runs it (in this process unless
    ``new_interpreter=True``)."""
    return _script_command(os.path.join('tools', 'model_converters', script), *args, **options)


@pytest.fixture
def converter_command():
    return _converter_command
