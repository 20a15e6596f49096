"""The checkpoint a user names as a local file: a path (used as it is), an ``http(s)://.../NAME``
URL (downloaded once into ``torch.hub.get_dir()/checkpoints/NAME``, torch.hub's and mmengine's
cache) or ``hf-hub:OWNER/REPO[@REVISION][/FILENAME]`` (that file, by default ``model.safetensors``
else ``pytorch_model.bin``, in huggingface_hub's cache). An optional ``sha256`` is checked whatever
the source. ``FASTERVIT_DENSE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` forbids downloads. Downloads are
atomic and happen once per machine (a ``filelock`` beside the target; under ``torch.distributed``
the ``LOCAL_RANK`` 0 processes first). Failures raise :class:`DownloadError` (a missing local file:
:exc:`FileNotFoundError`) naming the problem and the fix. See docs/checkpoints.md.
"""
import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, NamedTuple, Optional, TypeVar, Union

import torch

__all__ = ['DownloadError', 'InvalidSourceError', 'resolve_checkpoint', 'sha256_of']

_OFFLINE_VARIABLES = ('FASTERVIT_DENSE_OFFLINE', 'HF_HUB_OFFLINE')
_TRUE_VALUES = ('1', 'true', 'yes', 'on')  # what huggingface_hub accepts for HF_HUB_OFFLINE
_HF_PREFIX = 'hf-hub:'
_HF_DEFAULT_FILES = ('model.safetensors', 'pytorch_model.bin')
_ACCEPTED_FORMS = ("a local file path, an http:// or https:// URL, 'hf-hub:OWNER/REPO' (its "
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
    source: str  # as the user wrote it
    repo_id: str
    revision: Optional[str]
    filename: Optional[str]  # None: model.safetensors, else pytorch_model.bin


def resolve_checkpoint(source: Union[str, 'os.PathLike[str]'], sha256: Optional[str] = None,
                       progress: bool = True) -> str:
    """The local path of the checkpoint ``source`` names, downloaded first if needed; ``sha256``:
    its expected digest (64 hex digits); ``progress``: a bar on stderr while downloading a URL
    (Hugging Face downloads show huggingface_hub's, which HF_HUB_DISABLE_PROGRESS_BARS=1 hides)."""
    expected = _normalize_sha256(sha256)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source:
        raise InvalidSourceError(f'a checkpoint source must be a non-empty string or path, got '
                                 f'{source!r}; accepted sources: {_ACCEPTED_FORMS}')
    lowered = source.lower()
    if lowered.startswith(('http://', 'https://')):
        return _local_rank_zero_first(lambda: _resolve_url(source, expected, progress))
    if lowered.startswith(_HF_PREFIX):
        hub_id = _parse_hf_hub(source)
        return _local_rank_zero_first(lambda: _resolve_hf_hub(hub_id, expected))
    if re.match(r'^[a-z][a-z0-9+.-]*://', lowered):
        raise InvalidSourceError(f'unsupported checkpoint source {source!r}; accepted sources: '
                                 f'{_ACCEPTED_FORMS}')
    if not os.path.exists(source):
        raise FileNotFoundError(f'checkpoint file {source!r} does not exist: fix the path, or '
                                f"name an http(s):// URL or a Hugging Face Hub id ('{_HF_PREFIX}"
                                "OWNER/REPO') to download it")
    return _verified(source, expected, f'checkpoint file {source!r}',
                     'The file was kept: replace it with the right file or fix the sha256')


def sha256_of(path: str) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_hf_hub(source: str) -> _HubId:
    parts = source[len(_HF_PREFIX):].split('/')
    owner, repo = (parts + ['', ''])[:2]
    repo, _, revision = repo.partition('@')
    name = r'[A-Za-z0-9][\w.-]*'  # what the Hub allows in owner and repository names
    if (not re.fullmatch(name, owner) or not re.fullmatch(name, repo)
            or ('@' in parts[1] and not revision) or any(p in ('', '.', '..') for p in parts[2:])):
        raise InvalidSourceError(f'malformed Hugging Face Hub source {source!r}: expected '
                                 "'hf-hub:OWNER/REPO' or 'hf-hub:OWNER/REPO/FILENAME' (owner and "
                                 'repository are Hub names: letters, digits, "-", "_", "."; a '
                                 f"revision follows '@'); accepted sources: {_ACCEPTED_FORMS}")
    return _HubId(source, f'{owner}/{repo}', revision or None, '/'.join(parts[2:]) or None)


def _normalize_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    digest = sha256.strip().lower() if isinstance(sha256, str) else ''
    if not re.fullmatch(r'[0-9a-f]{64}', digest):
        raise InvalidSourceError(f'sha256 must be the 64 hex digits of a SHA-256 digest (e.g. the '
                                 f'output of `sha256sum FILE`), got {sha256!r}')
    return digest


def _verified(path: str, expected: Optional[str], what: str, fix: str) -> str:
    """``path``, if ``expected`` is None or its digest (the file is left where it is either way)."""
    if expected is not None:
        actual = sha256_of(path)  # read once: published files run to gigabytes
        if actual != expected:
            raise DownloadError(f'{what} does not match the expected sha256: expected '
                                f'{expected}, got {actual}. {fix}')
    return path


def _offline_variable() -> Optional[str]:
    """The name of the set variable that forbids downloads, or None."""
    return next((name for name in _OFFLINE_VARIABLES
                 if os.environ.get(name, '').strip().lower() in _TRUE_VALUES), None)


def _local_rank_zero_first(resolve: Callable[[], T]) -> T:
    """``resolve()`` under torch.distributed: the ``LOCAL_RANK`` 0 processes first (one per machine
    fills its cache), the others after a barrier, which a first process's failure still reaches."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return resolve()
    first = os.environ.get('LOCAL_RANK', '0').strip() in ('', '0')
    try:
        result = resolve() if first else None
    finally:  # reached by the first processes' failures too: the others never wait forever
        dist.barrier()
    return result if first else resolve()


def _url_cache_path(url: str) -> str:
    """torch hub's checkpoint folder / the last component of the URL's path."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if name in ('', '.', '..'):
        raise InvalidSourceError(f'the URL {url!r} does not end in a file name, so it has no cache '
                                 'file name; use the URL of the checkpoint file itself '
                                 '(https://HOST/.../NAME.pth)')
    return os.path.join(torch.hub.get_dir(), 'checkpoints', name)


def _resolve_url(url: str, expected: Optional[str], progress: bool) -> str:
    path = _url_cache_path(url)
    # A file at the cache path is always complete (downloads only os.replace() into it).
    if not os.path.exists(path):
        offline = _offline_variable()
        if offline:
            raise DownloadError(f'cannot download {url}: {offline}={os.environ[offline]} is set, '
                                f'which forbids downloads, and the file is not cached at {path}. '
                                f'Download it elsewhere and put it at that path, or unset {offline}')
        from filelock import FileLock, Timeout
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock = FileLock(path + '.lock')
            try:
                lock.acquire(timeout=0)
            except Timeout:
                sys.stderr.write(f'Waiting for another process that is downloading {url} '
                                 f'(lock {lock.lock_file})\n')
                lock.acquire()
        except OSError as error:
            raise DownloadError(f'cannot write to the download cache folder {os.path.dirname(path)}'
                                f' ({error}); set TORCH_HOME to a writable folder') from None
        try:
            if not os.path.exists(path):  # another process may have downloaded it meanwhile
                _download(url, path, expected, progress)
                return path
        finally:
            lock.release()
    return _verified(path, expected, f'the cached file at {path} (for {url})',
                     'Delete the file to download it again, or fix the sha256')


def _download(url: str, path: str, expected: Optional[str], progress: bool) -> None:
    """Streams ``url`` into ``path`` through a ``.part`` file that replaces ``path`` only when
    complete (its length the announced Content-Length) and matching ``expected``; on any failure,
    an interruption included, nothing is left behind."""
    from tqdm import tqdm
    if progress:  # the line torch.hub.load_state_dict_from_url prints
        sys.stderr.write(f'Downloading: "{url}" to {path}\n')
    folder, name = os.path.split(path)
    part = os.path.join(folder, f'.{name}.{os.getpid()}.part')

    def failed(problem: str, fix: str = 'Retry') -> DownloadError:
        return DownloadError(f'cannot download {url}: {problem}. Nothing was saved. {fix}, or '
                             f'download the file yourself and put it at {path} (a file there is '
                             'used without network access); FASTERVIT_DENSE_OFFLINE=1 forbids '
                             'downloads')

    digest, received, total = hashlib.sha256(), 0, None
    try:
        with open(part, 'wb') as f:
            try:
                request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
                with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                    length = response.headers.get('Content-Length')
                    total = int(length) if length and length.strip().isdigit() else None
                    with tqdm(total=total, desc=name, unit='B', unit_scale=True,
                              unit_divisor=1024, file=sys.stderr, disable=not progress) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b''):
                            try:
                                f.write(chunk)
                            except OSError as error:  # not a network failure
                                raise DownloadError(f'cannot write the download of {url} to '
                                                    f'{folder} ({error}); free some space or set '
                                                    'TORCH_HOME to another folder') from None
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as error:
                fix = 'Check the URL' if 400 <= error.code < 500 else 'Retry later'
                raise failed(f'HTTP {error.code} {error.reason}', fix) from None
            except urllib.error.URLError as error:
                raise failed(f'cannot connect ({error.reason})') from None
            except (OSError, http.client.HTTPException) as error:  # timeouts, resets, a full disk
                after = f' after {received}' + (f' of {total}' if total is not None else '') + \
                    ' bytes' if received else ''
                raise failed(f'the connection failed{after} ({_describe(error)})') from None
            # http.client returns a short body without complaint when the server closes early.
            if total is not None and received != total:
                raise failed(f'the server closed the connection after {received} of {total} '
                             'bytes (Content-Length)')
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points to it
        if expected is not None and digest.hexdigest() != expected:
            raise DownloadError(f'the file downloaded from {url} does not match the expected '
                                f'sha256: expected {expected}, got {digest.hexdigest()}; it was '
                                'not kept. Check the URL and the sha256')
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
        raise


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _resolve_hf_hub(hub_id: _HubId, expected: Optional[str]) -> str:
    """``hf_hub_download`` of the file (or of the first default file the repository has), offline
    under either variable; its errors passed on with the source, the cache and the offline fix."""
    from huggingface_hub import constants, errors, hf_hub_download  # a requirement of timm
    offline = _offline_variable()
    options = dict(revision=hub_id.revision, local_files_only=offline is not None)
    cache = constants.HF_HUB_CACHE
    files = (hub_id.filename, ) if hub_id.filename else _HF_DEFAULT_FILES
    not_found = (errors.EntryNotFoundError, getattr(errors, 'RemoteEntryNotFoundError', ()))
    missing = []
    for filename in files:
        try:
            path = hf_hub_download(hub_id.repo_id, filename, **options)
            return _verified(path, expected, f'the file {path} resolved from {hub_id.source}',
                             'Fix the sha256, or name the intended revision (@REVISION) or file')
        except not_found as error:
            missing.append(error)  # this file only (not cached, or not in the repository)
        except errors.RepositoryNotFoundError:
            problem = (f'the repository {hub_id.repo_id} does not exist on the Hugging Face Hub, '
                       'or it is private and you are not logged in (`hf auth login`, or set '
                       'HF_TOKEN)')
            break
        except errors.RevisionNotFoundError:
            problem = f'the repository {hub_id.repo_id} has no revision {hub_id.revision!r}'
            break
        except Exception as error:  # gated, disabled, invalid id, HTTP, connection: theirs say it
            problem = f'downloading failed ({_describe(error).splitlines()[0]})'
            break
    else:
        repo = f'{_HF_PREFIX}{hub_id.repo_id}' + (f'@{hub_id.revision}' if hub_id.revision else '')
        what = (f'neither {" nor ".join(files)} of {repo} is' if len(files) > 1 else
                f'{files[0]} of {repo} is not')
        if all(isinstance(error, errors.LocalEntryNotFoundError) for error in missing):
            why = (f'{offline}={os.environ[offline]} is set, which forbids downloads' if offline
                   else f'the Hub could not be reached ({_describe(missing[-1]).splitlines()[0]})')
            raise DownloadError(f'cannot resolve {hub_id.source}: {what} in the Hugging Face '
                                f'cache {cache} and {why}. Download it once while online (with '
                                'HF_HUB_OFFLINE and FASTERVIT_DENSE_OFFLINE unset), or set '
                                'HF_HOME to the folder whose hub/ cache holds it')
        where = f'the repository {hub_id.repo_id} (revision {hub_id.revision or "main"}) has'
        problem = (f'{where} no file {hub_id.filename}; check the file name' if hub_id.filename
                   else f'{where} neither {" nor ".join(files)}; name the file to use: '
                   f'{_HF_PREFIX}{hub_id.repo_id}/FILENAME')
    raise DownloadError(f'cannot resolve {hub_id.source}: {problem}. Files already in the Hugging '
                        f'Face cache {cache} (HF_HOME) are used without network access; '
                        'HF_HUB_OFFLINE=1 uses only those')
