"""The one way edgescope writes a file: a failure (full disk, crash, power cut) leaves the previous content whole.

- A whole file (report, plot, checkpoint, metrics textfile, file_sd targets) goes to a temporary file in the same
  directory, is flushed and fsync'ed, then renamed over the old one; on any failure the temporary file is
  removed and the old file is untouched. Files that belong together (a timeline's picture and trace) are all
  written to temporary files first and renamed only once every one is whole. A temporary file is locked while
  it is written: one left by a killed process (SIGKILL, a power cut) is unlocked and is removed by the next
  write of that file (or ``remove_stale``).
- A record appended to a log (``--results``, the experiment journal) is one line written with one ``os.write``
  on an ``O_APPEND`` descriptor of a regular file (a pipe or device is refused: without a reader its records are
  lost, and they cannot be read back to check a resume): a short write or an error truncates the file back to
  its previous size, so a record is there whole or not at all. A last line without its newline (a crash before
  this module, or a power cut) is moved to ``PATH.torn`` before anything is appended, never joined onto.
- Readers take complete lines only (``read_lines``).

Errors are OSError with ``filename`` set; ``cannot_write`` makes them the one line a command prints.
Imported by every component, so it needs nothing beyond the standard library.
"""
import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from typing import IO, Any, Callable, List, Optional, Sequence, Tuple

from exporter.readfile import read_regular

Writer = Callable[[IO[bytes]], Any]

# A log read back whole: a 10,000-run sweep's journal, profiled (three passes), is ~50 MB an attempt (a started
# event holds the run's context and command, ~1.5 KB); a --results record is ~1-2 KB, so 100,000 epochs fit.
MAX_LOG_BYTES = 256 << 20
TORN_SUFFIX = ".torn"
_TAIL_CHUNK = 65536


def cannot_write(what: str, path: str, error: BaseException, fix: str) -> str:
    """The one-line message for a failed write: what, where, the real cause, and what to do (``fix``, after
    "free space or" when the disk is full, with the space left there)."""
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:200] or type(error).__name__
    number = getattr(error, "errno", None)
    if number in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path)
        if free is not None:
            reason += " ({:.1f} MB free there)".format(free / 1e6)
        fix = "free space or " + fix
    elif number in (errno.ENOTDIR, errno.EEXIST):  # makedirs says "File exists" where a parent is a file
        blocking = _non_folder_parent(path)
        if blocking is not None:
            reason = "{} is not a folder".format(blocking)
    return "cannot write {} {}: {}; {}".format(what, path, reason, fix)


def free_bytes(path: str) -> Optional[int]:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (None: not known)."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def _non_folder_parent(path: str) -> Optional[str]:
    """The first of ``path``'s parents that exists but is not a folder (None: there is none)."""
    parent = os.path.dirname(os.path.abspath(path))
    blocking = None
    while parent != os.path.dirname(parent):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            blocking = parent
        parent = os.path.dirname(parent)
    return blocking


class _Recorded:
    """The file a writer fills, keeping the OSError its writes met: a serializer (torch.save) may report a full
    disk as its own error ("enforce fail at inline_container.cc"); the OSError is the real cause."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error = None  # type: Optional[OSError]

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_with(path: str, write: Writer) -> None:
    """``write(f)`` fills a temporary file beside ``path``, which then replaces it (fsync'ed first).
    The new file keeps an existing file's permissions (else the umask's, as ``open`` would); a symlink is
    followed, as ``open`` would, and stays; a device or pipe (``/dev/stdout``) is written as it is."""
    write_together([(path, write)])


def write_together(files: Sequence[Tuple[str, Writer]]) -> None:
    """Each ``(path, write)`` as ``write_with`` does, as one: every temporary file is written whole before any
    replaces its file, so a failure (a full disk on the second) leaves all the old files, never a new one beside
    an old one. (The renames that follow need no space; only a crash between two of them splits the set.)"""
    pending = []  # type: List[Tuple[str, str]]
    try:
        for path, write in files:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(os.stat(path).st_mode):
                    with open(path, "wb") as f:
                        write(f)
                    continue
            path = os.path.realpath(path)
            remove_stale(path)
            pending.append((_written_aside(path, write), path))
        for tmp, path in pending:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for directory in sorted({os.path.dirname(path) for _, path in pending}):
        _sync_directory(directory)


def _temporary_name(path: str, tag: str) -> str:
    # hidden and not ending in .prom/.png/...: no collector or glob picks up a half-written file
    return os.path.join(os.path.dirname(path), ".{}.{}.tmp".format(os.path.basename(path), tag))


def _written_aside(path: str, write: Writer) -> str:
    """``write``'s content in a new, locked, fsync'ed temporary file beside ``path``; its name."""
    tmp = _temporary_name(path, secrets.token_hex(4))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed: a killed writer's lock goes with it
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            recorded = _Recorded(f)
            try:
                write(recorded)  # type: ignore[arg-type]
            except Exception as error:
                if recorded.error is not None and not isinstance(error, OSError):
                    raise recorded.error from error
                raise
            f.flush()
            os.fsync(f.fileno())
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename in (None, tmp):
            raise OSError(error.errno, error.strerror, path) from error
        raise
    return tmp


def remove_stale(path: str) -> List[str]:
    """Removes the temporary files of ``path`` that no writer holds (left by a killed process); their names."""
    pattern = re.compile(r"^\.{}\.[0-9a-f]{{8}}\.tmp\Z".format(re.escape(os.path.basename(path))))
    directory = os.path.dirname(os.path.abspath(path))
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if pattern.match(name):
                stale = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a writer holds it
                        os.unlink(stale)
                        removed.append(stale)
                    finally:
                        os.close(fd)
    return removed


def write_bytes(path: str, data: bytes) -> None:
    """``data`` as the whole of ``path``, atomically (see ``write_with``)."""
    write_with(path, lambda f: f.write(data))


def append_lines(path: str, lines: Sequence[str]) -> Optional[str]:
    """Appends each line (no newline in it) as one whole record to a regular file, creating it; no lines only
    checks that the file can be written. A torn last line found first is set aside: the note saying so is
    returned. A pipe or device is refused (OSError EINVAL): without a reader every record would be lost."""
    # non-blocking: opening a FIFO must not wait for a writer or reader; a regular file ignores the flag
    fd = _os_call(path, os.open, path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe or device loses the records without a reader, "
                                        "and a resume cannot read them back)", path)
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
    """The complete lines of ``path`` (without newlines) and a note when a torn last line was left out; read as
    every outside file is (exporter.readfile: a FIFO would block the read for ever, /dev/zero never end), so
    OSError or readfile.Unreadable."""
    data = read_regular(path, MAX_LOG_BYTES)
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
