"""Turning the checkpoint a user names into a local file: local paths, URLs and Hugging Face Hub ids.

:func:`resolve_checkpoint` accepts these *sources*:

``/path/to/file.pth`` (a ``str`` or ``os.PathLike``)
    Returned unchanged; it must exist.
``http://...`` / ``https://...``
    Downloaded once into ``$TORCH_HOME/hub/checkpoints/<last component of the URL path>`` (query
    string stripped), i.e. ``os.path.join(torch.hub.get_dir(), 'checkpoints', name)``, the folder
    that ``torch.hub.load_state_dict_from_url`` and mmengine's ``load_from_http`` use, so a file any
    of them downloaded is reused and vice versa. ``$TORCH_HOME`` defaults to
    ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``; ``torch.hub.set_dir`` overrides it. A file
    at that path is used as it is, without network access: to work offline, put the file there by
    hand.
``hf-hub:OWNER/REPO``
    The repository's ``model.safetensors``, or its ``pytorch_model.bin`` when it has no
    safetensors file (or only that one is cached while offline).
``hf-hub:OWNER/REPO/FILENAME``
    That file of the repository (``FILENAME`` may contain ``/``). Either hub form takes an optional
    revision (branch, tag or commit) after the repository: ``hf-hub:OWNER/REPO@REVISION/FILENAME``.
    Files come from ``huggingface_hub.hf_hub_download`` and live in its cache,
    ``$HF_HOME/hub`` (``HF_HOME`` defaults to ``~/.cache/huggingface``; ``HF_HUB_CACHE`` overrides
    the folder).

An optional ``sha256`` (64 hex digits) is checked for every kind of source. A download whose digest
differs is not kept; a local or already cached file that differs is reported and left in place, so
that a mistyped digest never deletes a user's file.

Offline use: with ``FASTERVIT_DENSE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (``true``/``yes``/``on``
too) nothing is downloaded; a source that is not cached raises :class:`DownloadError` naming the
file to provide. ``huggingface_hub`` itself reads ``HF_HUB_OFFLINE`` and ``HF_HOME`` once, when it is
first imported.

Downloads are atomic (streamed into a ``.part`` file next to the target, which replaces the target
only when complete and verified) and happen once per machine: concurrent processes asking for the
same URL serialise on an ``fcntl`` lock file (``<target>.lock``, left in place on purpose: removing
it would let a waiting process and a new one both hold a lock) and the later ones find the cached
file. In an initialised ``torch.distributed`` job the processes with ``LOCAL_RANK`` 0 resolve remote
sources first and the others after a barrier (mmengine's convention), so every rank must call
:func:`resolve_checkpoint` for the same remote source.

Every failure raises :class:`DownloadError` (a missing local file: :exc:`FileNotFoundError`), whose
message names what went wrong and how to fix it. Only the standard library and torch are imported
here; ``huggingface_hub`` and ``tqdm`` are imported when needed.
"""
import contextlib
import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, NamedTuple, Optional, TypeVar, Union

import torch

try:  # POSIX only; elsewhere concurrent downloads are still atomic, just not deduplicated.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ['DownloadError', 'InvalidSourceError', 'is_remote', 'resolve_checkpoint', 'url_cache_path',
           'sha256_of', 'OFFLINE_VARIABLE']

#: Setting this (``1``/``true``/``yes``/``on``) forbids all downloads, like ``HF_HUB_OFFLINE``.
OFFLINE_VARIABLE = 'FASTERVIT_DENSE_OFFLINE'
_OFFLINE_VARIABLES = (OFFLINE_VARIABLE, 'HF_HUB_OFFLINE')
_TRUE_VALUES = ('1', 'true', 'yes', 'on')  # what huggingface_hub accepts for HF_HUB_OFFLINE

_HF_PREFIX = 'hf-hub:'
_HF_DEFAULT_FILES = ('model.safetensors', 'pytorch_model.bin')
ACCEPTED_FORMS = ("a local file path, an http:// or https:// URL, 'hf-hub:OWNER/REPO' (its "
                  "model.safetensors, else pytorch_model.bin) or 'hf-hub:OWNER/REPO/FILENAME', "
                  "optionally with a revision: 'hf-hub:OWNER/REPO@REVISION[/FILENAME]'")

_TIMEOUT_S = 60  # per socket operation (connect, each read), not for the whole download
_CHUNK = 1 << 20
_USER_AGENT = 'fastervit_dense-hub (Python-urllib; like torch.hub)'

T = TypeVar('T')


class DownloadError(RuntimeError):
    """A checkpoint source that cannot be turned into a usable local file."""


class InvalidSourceError(DownloadError, ValueError):
    """A source (or sha256) that is not in an accepted form; also a :exc:`ValueError`."""


class _HubId(NamedTuple):
    repo_id: str
    revision: Optional[str]
    filename: Optional[str]  # None: model.safetensors, else pytorch_model.bin

    def __str__(self):
        revision = f'@{self.revision}' if self.revision else ''
        filename = f'/{self.filename}' if self.filename else ''
        return f'{_HF_PREFIX}{self.repo_id}{revision}{filename}'


# ----------------------------------------------------------------------------------------------
# Public API


def is_remote(source) -> bool:
    """Whether ``source`` names a download (``http://``, ``https://`` or ``hf-hub:``), not a path."""
    if not isinstance(source, str):
        return False  # os.PathLike objects are always local
    return source.lower().startswith(('http://', 'https://', _HF_PREFIX))


def url_cache_path(url: str) -> str:
    """Where :func:`resolve_checkpoint` keeps the download of ``url`` (the file need not exist):
    ``os.path.join(torch.hub.get_dir(), 'checkpoints', <last component of the URL path>)``, the
    same name torch.hub and mmengine give it."""
    if not isinstance(url, str) or not url.lower().startswith(('http://', 'https://')):
        raise InvalidSourceError(f'not an http(s) URL: {url!r}; accepted sources: {ACCEPTED_FORMS}')
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if name in ('', '.', '..'):
        raise InvalidSourceError(f'the URL {url!r} does not end in a file name, so it has no cache '
                                 'file name; use the URL of the checkpoint file itself '
                                 '(https://HOST/.../NAME.pth)')
    # torch.hub.get_dir() reads $TORCH_HOME on every call unless torch.hub.set_dir() was called.
    return os.path.join(torch.hub.get_dir(), 'checkpoints', name)


def resolve_checkpoint(source: Union[str, 'os.PathLike[str]'], sha256: Optional[str] = None,
                       progress: bool = True) -> str:
    """The local path of the checkpoint ``source`` names, downloading it first if needed.

    Args:
        source: a local path, an ``http(s)://`` URL, ``hf-hub:OWNER/REPO`` or
            ``hf-hub:OWNER/REPO/FILENAME`` (see the module docstring).
        sha256: the file's expected SHA-256 (64 hex digits), checked whatever the source.
        progress: show a progress bar on stderr while downloading.

    Raises:
        FileNotFoundError: a local path that does not exist.
        DownloadError: anything else that fails (:class:`InvalidSourceError` for a malformed
            source or digest).
    """
    expected = _normalize_sha256(sha256)
    kind, value = _parse_source(source)
    if kind == 'local':
        return _resolve_local(value, expected)
    if kind == 'url':
        return _local_rank_zero_first(lambda: _resolve_url(value, expected, progress))
    return _local_rank_zero_first(lambda: _resolve_hf_hub(value, expected, progress))


# ----------------------------------------------------------------------------------------------
# Parsing sources


def _parse_source(source):
    """``('local', path)``, ``('url', url)`` or ``('hf', _HubId)``; raises for malformed sources."""
    if isinstance(source, bytes) or not isinstance(source, (str, os.PathLike)):
        raise InvalidSourceError(f'a checkpoint source must be a str or os.PathLike, got '
                                 f'{type(source).__name__} {source!r}; accepted sources: '
                                 f'{ACCEPTED_FORMS}')
    if not isinstance(source, str):
        path = os.fspath(source)
        if not isinstance(path, str):
            raise InvalidSourceError(f'a checkpoint path must be text, got {path!r}')
        return 'local', path
    if not source.strip():
        raise InvalidSourceError(f'empty checkpoint source; accepted sources: {ACCEPTED_FORMS}')
    lowered = source.lower()
    if lowered.startswith(('http://', 'https://')):
        url_cache_path(source)  # validates that the URL names a file
        return 'url', source
    if lowered.startswith(_HF_PREFIX):
        return 'hf', _parse_hf_hub(source)
    scheme = re.match(r'([A-Za-z][A-Za-z0-9+.-]*)://', source)
    if scheme:  # ftp://, s3://, file://, ...: never a sensible local path either
        raise InvalidSourceError(f'unsupported checkpoint source {source!r} ({scheme.group(1)}:// '
                                 f'is not supported); accepted sources: {ACCEPTED_FORMS}')
    return 'local', source


def _parse_hf_hub(source: str) -> _HubId:
    body = source[len(_HF_PREFIX):]
    parts = body.split('/')
    if len(parts) < 2 or any(p in ('', '.', '..') for p in parts):
        raise InvalidSourceError(f'malformed Hugging Face Hub source {source!r}: expected '
                                 "'hf-hub:OWNER/REPO' or 'hf-hub:OWNER/REPO/FILENAME'; accepted "
                                 f'sources: {ACCEPTED_FORMS}')
    owner, repo = parts[0], parts[1]
    revision = None
    if '@' in repo:
        repo, revision = repo.split('@', 1)
    name_pattern = r'[A-Za-z0-9][\w.-]*'  # what the Hub allows in owner and repository names
    if not re.fullmatch(name_pattern, owner) or not re.fullmatch(name_pattern, repo) or (
            revision is not None and not revision):
        raise InvalidSourceError(f'malformed Hugging Face Hub source {source!r}: OWNER and REPO '
                                 'must be Hub names (letters, digits, "-", "_", ".") and a '
                                 f"revision follows '@'; accepted sources: {ACCEPTED_FORMS}")
    filename = '/'.join(parts[2:]) or None
    return _HubId(f'{owner}/{repo}', revision, filename)


def _normalize_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    digest = sha256.strip().lower() if isinstance(sha256, str) else None
    if digest is None or not re.fullmatch(r'[0-9a-f]{64}', digest):
        raise InvalidSourceError(f'sha256 must be the 64 hex digits of a SHA-256 digest (e.g. the '
                                 f'output of `sha256sum FILE`), got {sha256!r}')
    return digest


# ----------------------------------------------------------------------------------------------
# Digests, offline mode, distributed ordering


def sha256_of(path: str) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_variable() -> Optional[str]:
    """The name of the set variable that forbids downloads, or None."""
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, '').strip().lower() in _TRUE_VALUES:
            return name
    return None


def _local_rank_zero_first(resolve: Callable[[], T]) -> T:
    """Runs ``resolve`` on the processes with ``LOCAL_RANK`` 0 first and on the others after a
    barrier (as mmengine's ``load_from_http`` does), when torch.distributed runs more than one
    process: one process per machine downloads, the others then read its cached file. The file lock
    alone would also download once, but this keeps the other ranks off the network entirely.

    A failure on a first process is raised only after the barrier, so the other ranks never wait
    forever for it; they then try themselves and fail with their own message."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return resolve()
    try:
        first = int(os.environ.get('LOCAL_RANK', '0') or 0) == 0
    except ValueError:
        first = True
    result, error = None, None
    if first:
        try:
            result = resolve()
        except Exception as caught:  # re-raised below, after the barrier
            error = caught
    dist.barrier()
    if error is not None:
        raise error
    return result if first else resolve()


# ----------------------------------------------------------------------------------------------
# Local files


def _resolve_local(path: str, expected: Optional[str]) -> str:
    if not os.path.exists(path):
        hint = ''
        if path.lower().startswith(('hf_hub:', 'hf:', 'huggingface:')):
            hint = f" (for the Hugging Face Hub write '{_HF_PREFIX}OWNER/REPO')"
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist: fix the path, or name an '
                                f"http(s):// URL or a Hugging Face Hub id ('{_HF_PREFIX}OWNER/REPO') "
                                f'to download it{hint}')
    return _verified_in_place(path, expected, f'checkpoint file {path!r}',
                              'The file was kept: replace it with the right file or fix the sha256')


# ----------------------------------------------------------------------------------------------
# URLs


def _resolve_url(url: str, expected: Optional[str], progress: bool) -> str:
    path = url_cache_path(url)
    # A file at the cache path is always complete (downloads only ever os.replace() into it), so
    # it can be used without the lock.
    if os.path.exists(path):
        return _checked_cache(path, url, expected)
    offline = _offline_variable()
    if offline:
        raise DownloadError(f'cannot download {url}: {offline}={os.environ[offline]} is set, which '
                            f'forbids downloads, and the file is not cached at {path}. Download it '
                            f'elsewhere and put it at that path, or unset {offline}')
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DownloadError(f'cannot create the download cache folder {folder} ({error}); set '
                            'TORCH_HOME to a writable folder') from None
    with _exclusive_lock(path + '.lock', url):
        # Another process may have downloaded it while this one waited for the lock.
        if os.path.exists(path):
            return _checked_cache(path, url, expected)
        if progress:  # the line torch.hub.load_state_dict_from_url prints
            sys.stderr.write(f'Downloading: "{url}" to {path}\n')
        _download(url, path, expected, progress)
    return path


def _checked_cache(path: str, url: str, expected: Optional[str]) -> str:
    # Not deleted on a mismatch: the digest may be the mistake, and the file may have been put
    # there by hand for offline use.
    return _verified_in_place(path, expected, f'the cached file at {path} (for {url})',
                              'Delete the file to download it again, or fix the sha256')


def _verified_in_place(path: str, expected: Optional[str], what: str, fix: str) -> str:
    """``path`` if ``expected`` is None or its digest; otherwise a DownloadError naming both
    digests, ``what`` the file is and the ``fix``. The file is left where it is."""
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise DownloadError(f'{what} does not match the expected sha256: expected {expected}, '
                                f'got {actual}. {fix}')
    return path


@contextlib.contextmanager
def _exclusive_lock(lock_path: str, url: str):
    """Holds an exclusive ``flock`` on ``lock_path`` (created if needed) for the ``with`` block."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise DownloadError(f'cannot create the lock file {lock_path} ({error}); set TORCH_HOME to '
                            'a writable folder') from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write(f'Waiting for another process that is downloading {url} '
                             f'(lock {lock_path})\n')
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _network_failure(url: str, path: str, problem: str, fix: str = 'Retry') -> DownloadError:
    return DownloadError(f'cannot download {url}: {problem}. Nothing was saved. {fix}, or download '
                         f'the file yourself and put it at {path} (a file there is used without '
                         f'network access); {OFFLINE_VARIABLE}=1 forbids downloads')


def _download(url: str, path: str, expected: Optional[str], progress: bool) -> None:
    """Downloads ``url`` to ``path`` atomically: through a temporary file in the same folder that
    replaces ``path`` only when complete (and matching ``expected``); removed on any failure."""
    folder, name = os.path.split(path)
    try:
        fd, part = tempfile.mkstemp(dir=folder, prefix='.' + name, suffix='.part')
    except OSError as error:
        raise DownloadError(f'cannot write to the download cache folder {folder} ({error}); set '
                            'TORCH_HOME to a writable folder') from None
    try:
        with os.fdopen(fd, 'wb') as f:
            digest = _stream(url, path, f, progress)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points to it
        if expected is not None and digest != expected:
            raise DownloadError(f'the file downloaded from {url} does not match the expected '
                                f'sha256: expected {expected}, got {digest}; it was not kept. '
                                'Check the URL and the sha256')
        # mkstemp creates the file readable by its owner only; give it the permissions any other
        # new file gets (torch.hub avoids mkstemp for this reason), so a shared cache stays usable.
        os.chmod(part, 0o666 & ~_umask())
        os.replace(part, path)
    except BaseException:  # including KeyboardInterrupt: never leave a partial file behind
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
        raise


def _open_url(url: str):
    request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def _stream(url: str, path: str, f, progress: bool) -> str:
    """Writes the body at ``url`` into ``f``; returns its sha256. ``path`` is for messages."""
    try:
        response = _open_url(url)
    except urllib.error.HTTPError as error:
        with contextlib.suppress(Exception):
            error.close()
        fix = 'Check the URL' if 400 <= error.code < 500 else 'Retry later'
        raise _network_failure(url, path, f'HTTP {error.code} {error.reason}', fix) from None
    except urllib.error.URLError as error:
        raise _network_failure(url, path, f'cannot connect ({error.reason})') from None
    except (OSError, http.client.HTTPException) as error:  # timeouts, resets, bad status lines
        raise _network_failure(url, path, f'the connection failed ({_describe(error)})') from None
    with response:
        total = _content_length(response)
        digest, received = hashlib.sha256(), 0
        with _progress_bar(total, os.path.basename(path), progress) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    of_total = f' of {total}' if total is not None else ''
                    raise _network_failure(url, path, f'the connection failed after {received}'
                                           f'{of_total} bytes ({_describe(error)})') from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as error:
                    raise DownloadError(f'cannot write the download of {url} to '
                                        f'{os.path.dirname(path)} ({error}); free some space or set '
                                        'TORCH_HOME to another folder') from None
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the server closes the connection
    # early, so the length is checked here.
    if total is not None and received != total:
        raise _network_failure(url, path, f'the server closed the connection after {received} of '
                               f'{total} bytes (Content-Length)')
    return digest.hexdigest()


def _content_length(response) -> Optional[int]:
    value = response.headers.get('Content-Length')
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None  # malformed: accept whatever arrives, as without the header
    return length if length is not None and length >= 0 else None


class _NoProgressBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _progress_bar(total: Optional[int], name: str, enabled: bool):
    if not enabled:
        return _NoProgressBar()
    try:
        from tqdm import tqdm
    except ImportError:  # like torch.hub: no bar without tqdm
        return _NoProgressBar()
    return tqdm(total=total, desc=name, unit='B', unit_scale=True, unit_divisor=1024,
                file=sys.stderr)


def _umask() -> int:
    """The process umask, read without os.umask(), which changes it for all threads while set."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


# ----------------------------------------------------------------------------------------------
# Hugging Face Hub


def _resolve_hf_hub(hub_id: _HubId, expected: Optional[str], progress: bool) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DownloadError(f'{hub_id} needs the huggingface_hub package: pip install '
                            'huggingface_hub') from None
    errors = _hf_errors()
    files = (hub_id.filename,) if hub_id.filename else _HF_DEFAULT_FILES
    # huggingface_hub reads HF_HUB_OFFLINE itself (at import); local_files_only makes it also obey
    # FASTERVIT_DENSE_OFFLINE, and HF_HUB_OFFLINE set after its import.
    offline = _offline_variable()
    options = dict(revision=hub_id.revision, local_files_only=offline is not None)
    if not progress:
        options.update(_hf_silent_progress(hf_hub_download))
    missing = []  # (file, error) for files neither cached nor downloadable
    for filename in files:
        try:
            path = hf_hub_download(hub_id.repo_id, filename, **options)
        except errors['missing'] as error:  # this file only: try the next one
            missing.append((filename, error))
            continue
        except Exception as error:
            raise _hf_failure(errors, hub_id, files, error) from None
        return _checked_hub_file(path, hub_id, expected)
    raise _hf_missing(errors, hub_id, missing, offline)


def _hf_errors() -> dict:
    """huggingface_hub's exception classes by role, from wherever this version defines them
    (``huggingface_hub.errors`` since 0.23, ``huggingface_hub.utils`` before)."""
    modules = []
    for name in ('huggingface_hub.errors', 'huggingface_hub.utils'):
        with contextlib.suppress(ImportError):
            modules.append(__import__(name, fromlist=['_']))

    def find(*names):
        found = tuple(getattr(m, n) for n in names for m in modules if hasattr(m, n))
        return tuple(dict.fromkeys(found)) or (_Never,)

    return dict(
        # EntryNotFoundError covers both "not in the repo" and (LocalEntryNotFoundError) "not
        # cached and no download possible"; in 1.x the former is RemoteEntryNotFoundError.
        missing=find('EntryNotFoundError', 'RemoteEntryNotFoundError', 'LocalEntryNotFoundError'),
        local_missing=find('LocalEntryNotFoundError'),
        repository=find('RepositoryNotFoundError'),
        gated=find('GatedRepoError'),
        disabled=find('DisabledRepoError'),
        revision=find('RevisionNotFoundError'),
        offline=find('OfflineModeIsEnabled'),
    )


class _Never(Exception):
    """Stands for an exception class this huggingface_hub version does not have."""


def _hf_constants():
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - very old versions
        return None
    return constants


def _hf_cache_folder() -> str:
    constants = _hf_constants()
    for name in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'):
        if getattr(constants, name, None):
            return getattr(constants, name)
    return os.path.join(os.path.expanduser(os.environ.get('HF_HOME', '~/.cache/huggingface')), 'hub')


def _hf_offline_reason(offline: Optional[str]) -> Optional[str]:
    if offline:
        return f'{offline}={os.environ[offline]} is set'
    constants = _hf_constants()
    is_offline = getattr(constants, 'is_offline_mode', lambda: getattr(constants, 'HF_HUB_OFFLINE',
                                                                          False))
    if is_offline():  # also set by TRANSFORMERS_OFFLINE
        return 'HF_HUB_OFFLINE is set'
    return None


def _hf_missing(errors, hub_id: _HubId, missing, offline) -> DownloadError:
    names = [f for f, _ in missing]
    cache = _hf_cache_folder()
    repo = f'{_HF_PREFIX}{hub_id.repo_id}' + (f'@{hub_id.revision}' if hub_id.revision else '')
    if all(isinstance(e, errors['local_missing']) for _, e in missing):
        reason = _hf_offline_reason(offline)
        why = (f'{reason}, which forbids downloads' if reason else
               f'the Hub could not be reached ({_describe(missing[-1][1]).splitlines()[0]})')
        what = (f'{names[0]} of {repo} is not' if len(names) == 1 else
                f'neither {" nor ".join(names)} of {repo} is')
        return DownloadError(f'cannot resolve {hub_id}: {what} in the Hugging Face cache {cache} '
                             f'and {why}. Download it once while online (with HF_HUB_OFFLINE and '
                             f'{OFFLINE_VARIABLE} unset), or set HF_HOME to the folder whose hub/ '
                             'cache holds it')
    where = f'the repository {hub_id.repo_id} (revision {hub_id.revision or "main"})'
    if hub_id.filename:
        problem = f'{where} has no file {hub_id.filename}; check the file name'
    else:
        problem = (f'{where} has neither {" nor ".join(names)}; name the file to use: '
                   f'{_HF_PREFIX}{hub_id.repo_id}/FILENAME')
    return DownloadError(f'cannot resolve {hub_id}: {problem} (Hugging Face cache: {cache}; '
                         'HF_HUB_OFFLINE=1 uses only cached files)')


def _hf_failure(errors, hub_id: _HubId, files, error) -> DownloadError:
    names = ' or '.join(files)
    cache = _hf_cache_folder()
    detail = _describe(error).splitlines()[0]
    if isinstance(error, errors['gated']):
        problem = (f'the repository {hub_id.repo_id} is gated: accept its terms on '
                   f'https://huggingface.co/{hub_id.repo_id} and log in (`hf auth login`, or set '
                   'HF_TOKEN)')
    elif isinstance(error, errors['repository']):
        problem = (f'the repository {hub_id.repo_id} does not exist on the Hugging Face Hub, or it '
                   'is private and you are not logged in (`hf auth login`, or set HF_TOKEN)')
    elif isinstance(error, errors['disabled']):
        problem = f'the repository {hub_id.repo_id} has been disabled on the Hugging Face Hub'
    elif isinstance(error, errors['revision']):
        problem = f'the repository {hub_id.repo_id} has no revision {hub_id.revision!r}'
    elif isinstance(error, errors['offline']):
        problem = f'HF_HUB_OFFLINE is set, which forbids downloads ({detail})'
    elif isinstance(error, ValueError):  # huggingface_hub's HFValidationError: a bad repo id
        return InvalidSourceError(f'invalid Hugging Face Hub source {hub_id} ({detail}); accepted '
                                  f'sources: {ACCEPTED_FORMS}')
    else:  # HTTP errors, connection errors, a cache folder that cannot be written
        problem = f'downloading failed ({detail})'
    return DownloadError(f'cannot resolve {hub_id} ({names}): {problem}. Files already in the '
                         f'Hugging Face cache {cache} (HF_HOME) are used without network access; '
                         'HF_HUB_OFFLINE=1 uses only those')


def _hf_silent_progress(hf_hub_download) -> dict:
    """``tqdm_class=`` that turns huggingface_hub's progress bar off for one call, where this
    version takes it (its global disable_progress_bars() would also change other code's bars)."""
    import inspect
    try:
        if 'tqdm_class' not in inspect.signature(hf_hub_download).parameters:
            return {}
        from tqdm.auto import tqdm
    except (ImportError, TypeError, ValueError):
        return {}

    class SilentTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs['disable'] = True
            super().__init__(*args, **kwargs)

    return dict(tqdm_class=SilentTqdm)


def _checked_hub_file(path: str, hub_id: _HubId, expected: Optional[str]) -> str:
    # Kept on a mismatch: it is the Hub's file in huggingface_hub's cache, so the digest is the
    # suspect.
    return _verified_in_place(path, expected, f'the file {path} resolved from {hub_id}',
                              'Fix the sha256, or name the intended revision (@REVISION) or file')
