"""Tests of ``fastervit_dense.hub``: local paths, URL downloads and Hugging Face Hub ids.

Nothing here reaches the network: every server is a ThreadingHTTPServer on 127.0.0.1. The Hugging
Face cache is built by hand and read offline (with ``HF_ENDPOINT`` pointing at a closed local port,
in case anything tried to connect anyway); the online Hub cases run against a fake Hub endpoint on
127.0.0.1. ``TORCH_HOME`` is a temporary folder.
"""
import hashlib
import io
import json
import os
import pathlib
import select
import socket
import subprocess
import sys
import time

import pytest
import torch

from fastervit_dense import hub
from fastervit_dense.hub import DownloadError, InvalidSourceError, resolve_checkpoint
from fastervit_dense.hub import _url_cache_path as url_cache_path
from fastervit_dense.testing.servers import FileServer, fill_hf_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBPROCESS_TIMEOUT_S = 120
WAITING = b'Waiting for another process'


# ----------------------------------------------------------------------------------------------
# Fixtures: a local HTTP server, isolated caches, a small checkpoint


@pytest.fixture(scope='module')
def payload() -> bytes:
    """A small real checkpoint (a few hundred KB), as torch.save writes it."""
    generator = torch.Generator().manual_seed(0)
    state = {'conv.weight': torch.randn(64, 32, 3, 3, generator=generator),
             'fc.weight': torch.randn(100, 256, generator=generator),
             'fc.bias': torch.randn(100, generator=generator)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def isolated_caches(isolated_downloads, monkeypatch):
    """TORCH_HOME in tmp_path, no offline variables, no proxies, short socket timeouts."""
    monkeypatch.setattr(hub, '_TIMEOUT_S', 10)


def checkpoints_dir(tmp_path) -> str:
    return os.path.join(str(tmp_path), 'torch_home', 'hub', 'checkpoints')


def leftovers(folder: str) -> list:
    """Temporary download files left in ``folder``."""
    if not os.path.isdir(folder):
        return []
    return [name for name in os.listdir(folder) if name.endswith('.part')]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def closed_port() -> int:
    """A local port nobody listens on (connecting to it is refused at once)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# Classifying sources


def test_local_path_is_returned_unchanged(tmp_path, monkeypatch, server):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'weights')
    assert resolve_checkpoint(str(checkpoint)) == str(checkpoint)
    assert resolve_checkpoint(checkpoint) == str(checkpoint)  # os.PathLike -> os.fspath
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint('model.pth') == 'model.pth'  # relative paths stay relative


def test_missing_local_path_raises_file_not_found(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError) as info:
        resolve_checkpoint(missing)
    message = str(info.value)
    assert message.startswith(f'checkpoint file {missing!r} does not exist')
    assert 'fix the path' in message and 'hf-hub:OWNER/REPO' in message and 'URL' in message


@pytest.mark.parametrize('source', [
    'hf-hub:', 'hf-hub:owner', 'hf-hub:owner/', 'hf-hub:/repo', 'hf-hub:owner/repo/',
    'hf-hub:owner/repo@/model.bin', 'hf-hub:owner/repo/../x.bin', 'hf-hub:own er/repo',
    'ftp://example.com/model.pth', 's3://bucket/model.pth', 'file:///tmp/model.pth', '', 123, None,
])
def test_bad_sources_list_the_accepted_forms(source):
    with pytest.raises(InvalidSourceError) as info:
        resolve_checkpoint(source)
    assert isinstance(info.value, DownloadError) and isinstance(info.value, ValueError)
    message = str(info.value)
    for form in ('local file path', 'http:// or https:// URL', "'hf-hub:OWNER/REPO'",
                 "'hf-hub:OWNER/REPO/FILENAME'"):
        assert form in message, message


def test_url_without_file_name_is_rejected():
    with pytest.raises(InvalidSourceError, match='does not end in a file name'):
        resolve_checkpoint('https://example.com/models/')


def test_url_cache_path_strips_query_and_follows_torch_home(tmp_path, monkeypatch):
    url = 'https://example.com/releases/v1/fastervit_0.pth.tar?download=1&token=x#part'
    assert url_cache_path(url) == os.path.join(checkpoints_dir(tmp_path), 'fastervit_0.pth.tar')
    assert url_cache_path(url) == os.path.join(torch.hub.get_dir(), 'checkpoints',
                                               'fastervit_0.pth.tar')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'elsewhere'))
    assert url_cache_path(url) == str(tmp_path / 'elsewhere' / 'hub' / 'checkpoints' /
                                      'fastervit_0.pth.tar')


@pytest.mark.parametrize('digest', ['abc', 'g' * 64, 'a' * 63, 42])
def test_malformed_sha256_is_rejected(tmp_path, digest):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'weights')
    with pytest.raises(InvalidSourceError, match='64 hex digits'):
        resolve_checkpoint(str(checkpoint), sha256=digest)


# ----------------------------------------------------------------------------------------------
# Downloading URLs


def test_download_then_read_from_cache(tmp_path, server, payload):
    url = server.add('/releases/model-a.pth', payload)
    path = resolve_checkpoint(url, progress=False)

    assert path == os.path.join(checkpoints_dir(tmp_path), 'model-a.pth') == url_cache_path(url)
    assert read(path) == payload
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {'conv.weight', 'fc.weight', 'fc.bias'}
    assert server.counts['/releases/model-a.pth'] == 1
    assert server.user_agents[0].startswith('fastervit_dense')
    assert sorted(os.listdir(checkpoints_dir(tmp_path))) == ['model-a.pth', 'model-a.pth.lock']

    # Readable like any file the user creates (mkstemp alone would leave it owner-only).
    probe = tmp_path / 'probe'
    probe.write_bytes(b'')
    assert os.stat(path).st_mode & 0o777 == os.stat(probe).st_mode & 0o777

    assert resolve_checkpoint(url, progress=False) == path
    assert server.total_requests == 1  # the second resolve used the cache


def test_cached_file_is_used_with_server_down_and_offline(server, payload, monkeypatch):
    url = server.add('/model-b.pth', payload)
    path = resolve_checkpoint(url, progress=False)
    server.shutdown()

    assert resolve_checkpoint(url, progress=False) == path
    monkeypatch.setenv('FASTERVIT_DENSE_OFFLINE', '1')
    assert resolve_checkpoint(url, progress=False) == path
    assert read(path) == payload
    assert server.total_requests == 1


def test_file_put_in_the_cache_by_hand_is_used_offline(monkeypatch):
    url = f'http://127.0.0.1:{closed_port()}/by-hand.pth'
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    path = url_cache_path(url)
    os.makedirs(os.path.dirname(path))
    with open(path, 'wb') as f:
        f.write(b'placed by hand')
    assert resolve_checkpoint(url, sha256=sha256(b'placed by hand')) == path


def test_truncated_body_is_an_error_and_leaves_nothing(tmp_path, server, payload):
    url = server.add('/cut/model-c.pth', payload, kind='short')
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, progress=False)
    message = str(info.value)
    assert url in message
    assert f'after {len(payload) // 2} of {len(payload)} bytes (Content-Length)' in message
    assert url_cache_path(url) in message
    assert not os.path.exists(url_cache_path(url))
    assert leftovers(checkpoints_dir(tmp_path)) == []

    server.add('/cut/model-c.pth', payload)  # the server works again
    path = resolve_checkpoint(url, progress=False)
    assert read(path) == payload
    assert server.counts['/cut/model-c.pth'] == 2


def test_body_without_content_length_is_accepted(server, payload):
    url = server.add('/model-d.pth', payload, kind='nolength')
    assert read(resolve_checkpoint(url, progress=False)) == payload


def test_redirect_is_followed_and_cached_under_the_requested_name(tmp_path, server, payload):
    server.add('/storage/blob-123', payload)
    url = server.add('/releases/model-e.pth', b'/storage/blob-123', kind='redirect')
    path = resolve_checkpoint(url, progress=False)
    assert path == os.path.join(checkpoints_dir(tmp_path), 'model-e.pth')
    assert read(path) == payload


def test_http_404_names_the_url_and_the_cache_path(tmp_path, server):
    url = server.url('/missing/model-f.pth')
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, progress=False)
    message = str(info.value)
    assert f'cannot download {url}: HTTP 404' in message
    assert f'put it at {url_cache_path(url)}' in message
    assert 'FASTERVIT_DENSE_OFFLINE=1 forbids downloads' in message
    assert not os.path.exists(url_cache_path(url))
    assert leftovers(checkpoints_dir(tmp_path)) == []


def test_refused_connection_names_the_cache_path(tmp_path):
    url = f'http://127.0.0.1:{closed_port()}/model-g.pth'
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, progress=False)
    message = str(info.value)
    assert f'cannot download {url}: cannot connect' in message
    assert url_cache_path(url) in message and 'FASTERVIT_DENSE_OFFLINE=1' in message
    assert leftovers(checkpoints_dir(tmp_path)) == []


def test_stalled_server_times_out(tmp_path, server, monkeypatch):
    monkeypatch.setattr(hub, '_TIMEOUT_S', 0.5)
    url = server.add('/model-h.pth', b'', kind='stall')
    started = time.monotonic()
    with pytest.raises(DownloadError, match='timed out') as info:
        resolve_checkpoint(url, progress=False)
    assert time.monotonic() - started < 5
    assert url_cache_path(url) in str(info.value)
    assert not os.path.exists(url_cache_path(url)) and leftovers(checkpoints_dir(tmp_path)) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class InterruptedResponse:
        headers = {'Content-Length': '2048'}
        reads = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            self.reads += 1
            if self.reads > 1:
                raise KeyboardInterrupt
            return b'x' * 1024

    monkeypatch.setattr(hub.urllib.request, 'urlopen', lambda request, timeout: InterruptedResponse())
    url = 'http://127.0.0.1:9/model-i.pth'
    with pytest.raises(KeyboardInterrupt):
        resolve_checkpoint(url, progress=False)
    assert not os.path.exists(url_cache_path(url))
    assert leftovers(checkpoints_dir(tmp_path)) == []


def test_progress_bar_and_message_only_when_asked(server, payload, capsys):
    url = server.add('/quiet.pth', payload)
    resolve_checkpoint(url, progress=False)
    assert capsys.readouterr().err == ''

    url = server.add('/loud.pth', payload)
    path = resolve_checkpoint(url, progress=True)
    err = capsys.readouterr().err
    assert f'Downloading: "{url}" to {path}' in err
    assert 'loud.pth' in err.split('\n', 1)[1]  # tqdm's bar, named after the file


# ----------------------------------------------------------------------------------------------
# sha256


def test_sha256_right_digest_passes(server, payload):
    url = server.add('/model-j.pth', payload)
    digest = sha256(payload)
    path = resolve_checkpoint(url, sha256=digest, progress=False)
    assert read(path) == payload
    assert resolve_checkpoint(url, sha256=digest.upper(), progress=False) == path  # cached
    assert server.total_requests == 1


def test_sha256_wrong_digest_download_is_not_kept(tmp_path, server, payload):
    url = server.add('/model-k.pth', payload)
    wrong = '0' * 64
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, sha256=wrong, progress=False)
    message = str(info.value)
    assert f'expected {wrong}, got {sha256(payload)}' in message and 'not kept' in message
    assert not os.path.exists(url_cache_path(url))
    assert leftovers(checkpoints_dir(tmp_path)) == []


def test_sha256_wrong_digest_of_cached_file_keeps_it(server, payload):
    url = server.add('/model-l.pth', payload)
    path = resolve_checkpoint(url, progress=False)
    wrong = 'f' * 64
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, sha256=wrong, progress=False)
    message = str(info.value)
    assert f'the cached file at {path}' in message
    assert f'expected {wrong}, got {sha256(payload)}' in message
    assert 'Delete the file' in message and 'fix the sha256' in message
    assert read(path) == payload
    assert server.total_requests == 1


def test_sha256_wrong_digest_of_local_file_keeps_it(tmp_path):
    checkpoint = tmp_path / 'local.pth'
    checkpoint.write_bytes(b'local weights')
    wrong = 'a' * 64
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(str(checkpoint), sha256=wrong)
    assert f'expected {wrong}, got {sha256(b"local weights")}' in str(info.value)
    assert checkpoint.read_bytes() == b'local weights'
    assert resolve_checkpoint(str(checkpoint), sha256=sha256(b'local weights')) == str(checkpoint)


# ----------------------------------------------------------------------------------------------
# Offline mode


@pytest.mark.parametrize('variable, value', [('FASTERVIT_DENSE_OFFLINE', '1'),
                                             ('FASTERVIT_DENSE_OFFLINE', 'Yes'),
                                             ('HF_HUB_OFFLINE', 'true')])
def test_offline_uncached_url_fails_without_a_request(tmp_path, server, payload, monkeypatch,
                                                      variable, value):
    url = server.add('/model-m.pth', payload)
    monkeypatch.setenv(variable, value)
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, progress=False)
    message = str(info.value)
    assert f'cannot download {url}: {variable}={value} is set' in message
    assert f'not cached at {url_cache_path(url)}' in message
    assert server.total_requests == 0
    assert not os.path.exists(checkpoints_dir(tmp_path))  # offline does not even create folders


def test_offline_variable_set_to_zero_allows_downloads(server, payload, monkeypatch):
    monkeypatch.setenv('FASTERVIT_DENSE_OFFLINE', '0')
    url = server.add('/model-n.pth', payload)
    assert read(resolve_checkpoint(url, progress=False)) == payload


# ----------------------------------------------------------------------------------------------
# Concurrency


# The subprocesses load hub.py by its path: it needs only the standard library and torch, so they
# start in torch's import time and do not depend on the rest of the package.
LOAD_HUB = f"""
import importlib.util, sys
import torch
before_hub = set(sys.modules)  # torch itself imports tqdm
spec = importlib.util.spec_from_file_location(
    'fastervit_dense_hub', {os.path.join(ROOT, 'fastervit_dense', 'hub.py')!r})
hub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hub)
resolve_checkpoint = hub.resolve_checkpoint
"""

RESOLVE_SCRIPT = LOAD_HUB + """
print(resolve_checkpoint(sys.argv[1], progress=False))
"""


@pytest.mark.subprocess
def test_two_processes_download_once(tmp_path, server, payload):
    """Two processes resolve one URL at once: one downloads (the server stops half way until the
    other is seen waiting for the lock), the other waits and then reads the cached file."""
    url = server.add('/shared/model-o.pth', payload, kind='slow')
    processes = [subprocess.Popen([sys.executable, '-c', RESOLVE_SCRIPT, url], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=dict(os.environ))
                 for _ in range(2)]
    try:
        # Until one process reports waiting for the other (or both have ended, or 60 s).
        stderr = {p: b'' for p in processes}
        deadline = time.monotonic() + 60
        while not any(WAITING in err for err in stderr.values()) and time.monotonic() < deadline:
            running = [p for p in processes if p.poll() is None]
            if not running or server.counts['/shared/model-o.pth'] > 1:  # ended, or no lock
                break
            ready, _, _ = select.select([p.stderr for p in running], [], [], 0.2)
            for p in running:
                if p.stderr in ready:
                    stderr[p] += os.read(p.stderr.fileno(), 65536)
        server.release()
        results = []
        for p in processes:
            out, err = p.communicate(timeout=SUBPROCESS_TIMEOUT_S)
            results.append((p.returncode, out.decode().strip(), (stderr[p] + err).decode()))
    finally:
        server.release()
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()

    expected_path = os.path.join(checkpoints_dir(tmp_path), 'model-o.pth')
    for returncode, out, err in results:
        assert returncode == 0, err
        assert out.splitlines()[-1] == expected_path
    assert sum(WAITING.decode() in err for _, _, err in results) == 1, results
    assert read(expected_path) == payload
    assert server.counts['/shared/model-o.pth'] == 1
    assert leftovers(checkpoints_dir(tmp_path)) == []


class FakeDistributed:
    """Stands in for an initialised 2-process torch.distributed job; records the barrier."""

    def __init__(self, monkeypatch, events):
        import torch.distributed as dist
        monkeypatch.setattr(dist, 'is_available', lambda: True)
        monkeypatch.setattr(dist, 'is_initialized', lambda: True)
        monkeypatch.setattr(dist, 'get_world_size', lambda *args, **kwargs: 2)
        monkeypatch.setattr(dist, 'barrier', lambda *args, **kwargs: events.append('barrier'))


@pytest.mark.parametrize('local_rank, order', [('0', ['resolve', 'barrier']),
                                               ('1', ['barrier', 'resolve'])])
def test_distributed_local_rank_zero_resolves_first(monkeypatch, local_rank, order):
    events = []
    FakeDistributed(monkeypatch, events)
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    assert hub._local_rank_zero_first(lambda: events.append('resolve') or 'path') == 'path'
    assert events == order


def test_distributed_failure_on_rank_zero_still_reaches_the_barrier(monkeypatch):
    events = []
    FakeDistributed(monkeypatch, events)

    def failing():
        events.append('resolve')
        raise DownloadError('boom')

    with pytest.raises(DownloadError, match='boom'):
        hub._local_rank_zero_first(failing)
    assert events == ['resolve', 'barrier']  # the other ranks are not left waiting


def test_distributed_other_rank_reads_the_cache_after_the_barrier(server, payload, monkeypatch):
    events = []
    FakeDistributed(monkeypatch, events)
    url = server.add('/model-p.pth', payload)
    monkeypatch.setenv('LOCAL_RANK', '0')
    path = resolve_checkpoint(url, progress=False)  # as local rank 0
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert resolve_checkpoint(url, progress=False) == path  # as local rank 1
    assert events == ['barrier', 'barrier']
    assert server.total_requests == 1
    local = url_cache_path(url)
    assert resolve_checkpoint(local) == local and events == ['barrier', 'barrier']  # no barrier


# ----------------------------------------------------------------------------------------------
# Hugging Face Hub (resolved in subprocesses: huggingface_hub reads HF_HOME/HF_HUB_OFFLINE once)


HF_SCRIPT = LOAD_HUB + """
import json
heavy = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'huggingface_hub', 'tqdm')
imported = sorted(m for m in set(sys.modules) - before_hub if m.split('.')[0] in heavy)
results = []
for source, digest in json.loads(sys.argv[1]):
    try:
        results.append(dict(path=resolve_checkpoint(source, sha256=digest, progress=False)))
    except Exception as error:
        results.append(dict(error=type(error).__name__, message=str(error)))
print(json.dumps(dict(imported_by_hub=imported, results=results)))
"""

SAFETENSORS = b'safetensors bytes'
OTHER = b'other file'
OTHER_V1 = b'other file, revision v1.0'
NESTED = b'nested file'
PYTORCH_BIN = b'pytorch_model.bin bytes'
COMMIT = 'a' * 40
COMMIT_V1 = 'b' * 40
COMMIT_BIN = 'c' * 40


def make_hf_cache(hf_home: pathlib.Path) -> dict:
    """A Hugging Face cache with three repositories and revisions. Returns the snapshot paths by
    name."""
    repo = fill_hf_cache(hf_home, 'owner/repo', {'model.safetensors': SAFETENSORS,
                                                 'other.bin': OTHER,
                                                 'sub/dir/weights.pth': NESTED}, commit=COMMIT)
    v1 = fill_hf_cache(hf_home, 'owner/repo', {'other.bin': OTHER_V1}, ref='v1.0', commit=COMMIT_V1)
    bin_only = fill_hf_cache(hf_home, 'owner/bin-only', {'pytorch_model.bin': PYTORCH_BIN},
                             commit=COMMIT_BIN)
    return dict(repo=repo, v1=v1, bin_only=bin_only, cache=str(hf_home / 'hub'))


HF_SOURCES = [
    ('hf-hub:owner/repo', None),
    ('hf-hub:owner/repo/other.bin', None),
    ('hf-hub:owner/repo/sub/dir/weights.pth', None),
    ('hf-hub:owner/repo@v1.0/other.bin', None),
    ('hf-hub:owner/bin-only', None),
    ('hf-hub:owner/uncached', None),
    ('hf-hub:owner/repo/missing.bin', None),
    ('hf-hub:owner/repo', sha256(SAFETENSORS)),
    ('hf-hub:owner/repo', 'e' * 64),
]


HUB_COMMIT = 'd' * 40
ONLINE_BIN = b'pytorch_model.bin served by the fake Hub'
ONLINE_SOURCES = [
    ('hf-hub:owner/online', None),
    ('hf-hub:owner/online', sha256(ONLINE_BIN)),
    ('hf-hub:owner/online/model.safetensors', None),
    ('hf-hub:owner/empty', None),
    ('hf-hub:owner/private', None),
    ('hf-hub:owner/online@v9/pytorch_model.bin', None),
]


def fake_hub() -> FileServer:
    """A Hugging Face Hub endpoint: owner/online has only pytorch_model.bin, owner/empty neither
    default file, owner/private does not exist (or is not visible), owner/online has no v9."""
    server = FileServer()
    server.add('/owner/online/resolve/main/pytorch_model.bin', ONLINE_BIN, headers={
        'X-Repo-Commit': HUB_COMMIT, 'ETag': f'"{sha256(ONLINE_BIN)}"'})
    for repo in ('online', 'empty'):
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if (repo, name) != ('online', 'pytorch_model.bin'):
                server.add(f'/owner/{repo}/resolve/main/{name}', b'EntryNotFound', kind='hub-error')
    for name in ('model.safetensors', 'pytorch_model.bin'):
        server.add(f'/owner/private/resolve/main/{name}', b'RepoNotFound', kind='hub-error')
    server.add('/owner/online/resolve/v9/pytorch_model.bin', b'RevisionNotFound', kind='hub-error')
    return server


@pytest.fixture(scope='module')
def hf_results(tmp_path_factory):
    """Resolves HF_SOURCES twice, in subprocesses run side by side: once with HF_HUB_OFFLINE=1,
    once with only FASTERVIT_DENSE_OFFLINE=1 (huggingface_hub itself online, pointed at a closed
    local port); and ONLINE_SOURCES online against :func:`fake_hub` with an empty cache. Returns
    ({mode: {source: result}}, the cache paths, the fake Hub's request counts)."""
    hf_home = tmp_path_factory.mktemp('hf_home')
    layout = make_hf_cache(hf_home)
    online_home = tmp_path_factory.mktemp('hf_home_online')
    layout['online_cache'] = str(online_home / 'hub')
    base = {k: v for k, v in os.environ.items()
            if k not in ('HF_HUB_OFFLINE', 'FASTERVIT_DENSE_OFFLINE', 'HF_HUB_CACHE',
                         'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'LOCAL_RANK')}
    base.update(HF_HOME=str(hf_home), HF_ENDPOINT=f'http://127.0.0.1:{closed_port()}',
                HF_HUB_DISABLE_TELEMETRY='1', HF_HUB_ETAG_TIMEOUT='2', HF_HUB_DOWNLOAD_TIMEOUT='2',
                TORCH_HOME=str(hf_home / 'torch'))
    hub_server = fake_hub()
    runs = {'HF_HUB_OFFLINE': (dict(base, HF_HUB_OFFLINE='1'), HF_SOURCES),
            'FASTERVIT_DENSE_OFFLINE': (dict(base, FASTERVIT_DENSE_OFFLINE='1'), HF_SOURCES),
            'ONLINE': (dict(base, HF_HOME=str(online_home), HF_ENDPOINT=hub_server.url('')),
                       ONLINE_SOURCES)}
    processes = {name: subprocess.Popen([sys.executable, '-c', HF_SCRIPT, json.dumps(sources)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                 for name, (env, sources) in runs.items()}
    results = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
            assert process.returncode == 0, err.decode()
            report = json.loads(out.decode().strip().splitlines()[-1])
            results[name] = {(source, digest): result
                             for (source, digest), result in zip(runs[name][1], report['results'])}
            results[name]['imported_by_hub'] = report['imported_by_hub']
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        hub_server.shutdown()
    layout['hub_counts'] = hub_server.counts
    return results, layout


OFFLINE_MODES = ['HF_HUB_OFFLINE', 'FASTERVIT_DENSE_OFFLINE']


@pytest.mark.parametrize('mode', OFFLINE_MODES)
def test_hf_hub_repo_resolves_to_model_safetensors(hf_results, mode):
    results, layout = hf_results
    assert results[mode][('hf-hub:owner/repo', None)] == {'path': layout['repo']['model.safetensors']}
    assert read(layout['repo']['model.safetensors']) == SAFETENSORS


@pytest.mark.parametrize('mode', OFFLINE_MODES)
def test_hf_hub_named_file(hf_results, mode):
    results, layout = hf_results
    assert results[mode][('hf-hub:owner/repo/other.bin', None)] == {'path': layout['repo']['other.bin']}
    assert results[mode][('hf-hub:owner/repo/sub/dir/weights.pth', None)] == {
        'path': layout['repo']['sub/dir/weights.pth']}


def test_hf_hub_revision(hf_results):
    results, layout = hf_results
    result = results['HF_HUB_OFFLINE'][('hf-hub:owner/repo@v1.0/other.bin', None)]
    assert result == {'path': layout['v1']['other.bin']}
    assert read(result['path']) == OTHER_V1


def test_hf_hub_falls_back_to_pytorch_model_bin(hf_results):
    results, layout = hf_results
    result = results['HF_HUB_OFFLINE'][('hf-hub:owner/bin-only', None)]
    assert result == {'path': layout['bin_only']['pytorch_model.bin']}


@pytest.mark.parametrize('mode', OFFLINE_MODES)
def test_hf_hub_uncached_offline_is_an_error(hf_results, mode):
    results, layout = hf_results
    result = results[mode][('hf-hub:owner/uncached', None)]
    assert result['error'] == 'DownloadError', result
    message = result['message']
    assert message.startswith('cannot resolve hf-hub:owner/uncached:')
    assert 'neither model.safetensors nor pytorch_model.bin of hf-hub:owner/uncached is in' in message
    assert layout['cache'] in message
    assert f'{mode}=1 is set, which forbids downloads' in message
    assert 'HF_HUB_OFFLINE' in message and 'HF_HOME' in message


def test_hf_hub_uncached_named_file_is_an_error(hf_results):
    results, layout = hf_results
    result = results['HF_HUB_OFFLINE'][('hf-hub:owner/repo/missing.bin', None)]
    assert result['error'] == 'DownloadError', result
    assert 'hf-hub:owner/repo/missing.bin' in result['message']
    assert 'missing.bin of hf-hub:owner/repo is not in the Hugging Face cache' in result['message']


def test_hf_hub_sha256(hf_results):
    results, layout = hf_results
    assert results['HF_HUB_OFFLINE'][('hf-hub:owner/repo', sha256(SAFETENSORS))] == {
        'path': layout['repo']['model.safetensors']}
    result = results['HF_HUB_OFFLINE'][('hf-hub:owner/repo', 'e' * 64)]
    assert result['error'] == 'DownloadError'
    assert f'expected {"e" * 64}, got {sha256(SAFETENSORS)}' in result['message']
    assert read(layout['repo']['model.safetensors']) == SAFETENSORS  # kept


def test_hub_module_imports_only_the_standard_library_and_torch(hf_results):
    results, _ = hf_results
    assert results['HF_HUB_OFFLINE']['imported_by_hub'] == []  # huggingface_hub/tqdm: lazily


# Online against a fake Hub endpoint (HF_ENDPOINT on 127.0.0.1): huggingface_hub's real errors.


def test_hf_hub_online_download_falls_back_to_pytorch_model_bin(hf_results):
    results, layout = hf_results
    result = results['ONLINE'][('hf-hub:owner/online', None)]
    expected = os.path.join(layout['online_cache'], 'models--owner--online', 'snapshots', HUB_COMMIT,
                            'pytorch_model.bin')
    assert result == {'path': expected}
    assert read(expected) == ONLINE_BIN
    assert results['ONLINE'][('hf-hub:owner/online', sha256(ONLINE_BIN))] == {'path': expected}
    assert layout['hub_counts']['/owner/online/resolve/main/pytorch_model.bin'] == 1  # then cached


def test_hf_hub_online_missing_files_are_named(hf_results):
    results, layout = hf_results
    named = results['ONLINE'][('hf-hub:owner/online/model.safetensors', None)]
    assert named['error'] == 'DownloadError'
    assert named['message'].startswith('cannot resolve hf-hub:owner/online/model.safetensors: the '
                                       'repository owner/online (revision main) has no file '
                                       'model.safetensors; check the file name')
    empty = results['ONLINE'][('hf-hub:owner/empty', None)]
    assert empty['error'] == 'DownloadError'
    assert 'has neither model.safetensors nor pytorch_model.bin; name the file to use: ' \
           'hf-hub:owner/empty/FILENAME' in empty['message']
    assert layout['online_cache'] in empty['message'] and 'HF_HUB_OFFLINE' in empty['message']


def test_hf_hub_online_unknown_repository_and_revision(hf_results):
    results, layout = hf_results
    private = results['ONLINE'][('hf-hub:owner/private', None)]
    assert private['error'] == 'DownloadError'
    assert 'the repository owner/private does not exist on the Hugging Face Hub, or it is private' \
        in private['message']
    assert 'HF_TOKEN' in private['message'] and layout['online_cache'] in private['message']
    revision = results['ONLINE'][('hf-hub:owner/online@v9/pytorch_model.bin', None)]
    assert revision['error'] == 'DownloadError'
    assert "the repository owner/online has no revision 'v9'" in revision['message']
