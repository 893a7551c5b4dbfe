"""The one way edgescope writes a file: a failure (full disk, crash, power cut) leaves the previous content whole.

- A whole file (report, plot, checkpoint, metrics textfile, file_sd targets) goes to a temporary file in the same
  directory, is flushed and fsync'ed, then renamed over the old one; on any failure the temporary file is
  removed and the old file is untouched.
- A record appended to a log (``--results``, the experiment journal) is one line written with one ``os.write``
  on an ``O_APPEND`` descriptor: a short write or an error truncates the file back to its previous size, so a
  record is there whole or not at all. A last line without its newline (a crash before this module, or a
  power cut) is moved to ``PATH.torn`` before anything is appended, never joined onto.
- Readers take complete lines only (``read_lines``).

Errors are OSError with ``filename`` set; ``cannot_write`` makes them the one line a command prints.
Imported by every component, so it needs nothing beyond the standard library.
"""
import contextlib
import errno
import os
import secrets
import stat
from typing import IO, Any, Callable, List, Optional, Sequence, Tuple

TORN_SUFFIX = ".torn"
_TAIL_CHUNK = 65536


def cannot_write(what: str, path: str, error: BaseException, fix: str) -> str:
    """The one-line message for a failed write: what, where, why, and what to do (``fix``, after "free space
    or" when the disk is full)."""
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:200] or type(error).__name__
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space or " + fix
    return "cannot write {} {}: {}; {}".format(what, path, reason, fix)


def write_with(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(f)`` fills a temporary file beside ``path``, which then replaces it (fsync'ed first).
    The new file keeps an existing file's permissions (else the umask's, as ``open`` would); a symlink is
    followed, as ``open`` would, and stays; a device or pipe (``/dev/stdout``) is written as it is."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(path).st_mode):
            with open(path, "wb") as f:
                write(f)
            return
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    # hidden and not ending in .prom/.png/...: no collector or glob picks up a half-written file
    tmp = os.path.join(directory, ".{}.{}.tmp".format(os.path.basename(path), secrets.token_hex(4)))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename in (None, tmp):
            raise OSError(error.errno, error.strerror, path) from error
        raise
    _sync_directory(directory)


def write_bytes(path: str, data: bytes) -> None:
    """``data`` as the whole of ``path``, atomically (see ``write_with``)."""
    write_with(path, lambda f: f.write(data))


def append_lines(path: str, lines: Sequence[str]) -> Optional[str]:
    """Appends each line (no newline in it) as one whole record, creating the file; no lines only checks that
    the file can be written. A torn last line found first is set aside: the note saying so is returned."""
    fd = _os_call(path, os.open, path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/stdout, a pipe: nothing to sync or cut back
            for line in lines:
                _os_call(path, os.write, fd, (line + "\n").encode("utf-8"))
            return None
        note = _set_aside_torn(fd, path)
        for line in lines:
            record = (line + "\n").encode("utf-8")
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, record) != len(record):  # a regular file writes short only when full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
                os.fsync(fd)
            except OSError as error:
                os.ftruncate(fd, size)
                raise OSError(error.errno, error.strerror, path) from error
        return note
    finally:
        os.close(fd)


def read_lines(path: str) -> Tuple[List[str], Optional[str]]:
    """The complete lines of ``path`` (without newlines) and a note when a torn last line was left out."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with its newline
    note = _torn_note(path, len(torn), "left out") if torn else None
    return [line.decode("utf-8", errors="replace") for line in lines], note


def _set_aside_torn(fd: int, path: str) -> Optional[str]:
    """Moves a last line that lacks its newline to PATH.torn (appended whole there) and cuts it off ``path``."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    start = size
    while start > 0:
        chunk_start = max(0, start - _TAIL_CHUNK)
        newline = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
        if newline >= 0:
            start = chunk_start + newline + 1
            break
        start = chunk_start
    fragment = os.pread(fd, size - start, start)
    aside = path + TORN_SUFFIX
    append_lines(aside, [fragment.decode("utf-8", errors="replace")])
    _os_call(path, os.ftruncate, fd, start)
    return _torn_note(path, len(fragment), "moved to " + aside)


def _torn_note(path: str, size: int, done: str) -> str:
    return "{} ended in a torn line ({} bytes without a newline: a write cut short by a crash); {}".format(
        path, size, done)


def _os_call(path: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` with ``path`` named in its OSError."""
    try:
        return call(*args)
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from error


def _sync_directory(directory: str) -> None:
    """The rename itself survives a power cut once the directory is fsync'ed (best effort: not every
    filesystem lets a directory be opened or synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
