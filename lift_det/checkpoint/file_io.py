"""Atomic writes, which every lift_det file goes through: a uniquely named temporary file in the
same folder (``.<name>.<host>-<pid>.<random>.tmp``), fsync'ed, renamed over the target, the folder
fsync'ed; and reading checkpoints with errors that name the file."""

import contextlib
import errno
import hashlib
import logging
import os
import re
import socket
import tempfile
import time
import zipfile
from typing import IO, Any, Iterator, List, Optional
import torch

from ..utils.cli import UserError

logger = logging.getLogger(__name__)

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[^.]+\.tmp$")
_OLD_TEMP_RE = re.compile(r"^\.tmp-.+")  # fixed names of lift_det <= 0.1 (`.tmp-<name>`)
STALE_AFTER_S = 24 * 3600  # another host's (or a reused pid's) temp file is stale after a day


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def is_temp_file(name: str) -> bool:
    """Whether ``name`` (a base name) is a temporary file of this module."""
    return bool(_TEMP_RE.match(name))


def _pid_alive(pid: int) -> bool:
    try:
        with contextlib.suppress(PermissionError):  # exists, owned by someone else
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_stale(folder: str, name: str) -> bool:
    try:
        age = time.time() - os.path.getmtime(os.path.join(folder, name))
    except OSError:  # gone meanwhile
        return False
    m = _TEMP_RE.match(name)
    if m is None:
        return bool(_OLD_TEMP_RE.match(name)) and age > 3600
    if age > STALE_AFTER_S:
        return True
    pid = int(m.group("pid"))
    return m.group("host") == _HOST and pid != os.getpid() and not _pid_alive(pid)


def remove_stale_temp_files(folder: str) -> List[str]:
    """Remove from ``folder`` the temporary files of writers that died (a process of this host
    that no longer runs, or older than a day); returns the removed paths."""
    removed = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if _is_stale(folder, name):
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    if removed:
        logger.info(f"Removed {len(removed)} leftover temporary file(s) of killed saves: {removed}")
    return removed


class _WriteErrors:
    """The file ``torch.save`` writes through, which keeps the ``OSError`` of a failed write (a
    full disk) that torch's zip writer turns into a ``RuntimeError``."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable, where the folder can be opened and synced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_open(path: str) -> Iterator[IO[bytes]]:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}.{_HOST}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)  # the data is on disk before the name points at it
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk
            raise OSError(
                errno.ENOSPC,
                f"no space left on {folder} while writing {os.path.basename(path)} ({e}); "
                f"{'the previous version is kept' if os.path.exists(path) else 'nothing written'}",
            ) from e
        raise
    _fsync_folder(folder)  # ... and the rename survives a power loss


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a full disk leaves the previous file."""
    with _atomic_open(path) as f:
        sink = _WriteErrors(f)
        try:
            torch.save(obj, sink)
        except RuntimeError as e:
            if sink.error is None:
                raise
            raise sink.error from e


def atomic_write_bytes(path: str, data: bytes) -> None:
    with _atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


class NotACheckpointError(RuntimeError, UserError):
    """A file ``torch.load`` / ``pickle`` cannot read (a ``RuntimeError`` as torch's own)."""


# a MemoryError from a file smaller than this comes from corrupt length fields, not the machine
_MEMORY_ERROR_MAX_BYTES = 256 * 2**20


def unreadable_content(path: str, error: BaseException) -> bool:
    """Whether ``error``, raised while unpickling ``path``, says its bytes are not a checkpoint
    (the unpicklers raise almost anything on random or cut bytes)."""
    if isinstance(error, MemoryError):
        return os.path.getsize(path) < _MEMORY_ERROR_MAX_BYTES
    return isinstance(error, Exception)


def not_a_checkpoint(path: str, error: BaseException, what: str = "checkpoint") -> Exception:
    """The error for a file ``torch.load`` / ``pickle`` cannot read (random bytes, truncated)."""
    size = os.path.getsize(path)
    reason = str(error).splitlines()[0] if zipfile.is_zipfile(path) else "not a zip archive"
    return NotACheckpointError(
        f"'{path}' ({size} bytes) is not a {what} or is truncated ({reason[:200]}): an "
        f"interrupted download or copy, or the wrong file? Download/copy it again or fix the path."
    )


def torch_load_checked(path: str, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)`` on CPU; a file that cannot be opened raises ``OSError``
    naming ``path``, one that cannot be unpickled :func:`not_a_checkpoint`'s error."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:  # missing, a folder, no permission: not the file's content
        raise type(e)(
            e.errno, f"cannot open {what} '{path}' ({e.strerror}): fix the path or its permissions"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not unreadable_content(path, e):
            raise
        raise not_a_checkpoint(path, e, what) from None
