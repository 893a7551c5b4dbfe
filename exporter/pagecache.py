"""How much of a dataset sits in the page cache, counted the way vmtouch counts it.

For every regular file under a path (symlinks not followed, hard links counted
once, files of any size: vmtouch skips files over 500 MB by default, this
does not): total pages = ceil(size / page size), resident pages from
cachestat(2) where the kernel has it (Linux >= 6.5: one syscall per file, no
mapping) and from mmap + mincore(2) otherwise. The method is chosen once,
automatically, by trying cachestat on a file.
"""
import ctypes
import errno
import mmap
import os
import sys
from typing import Iterator, NamedTuple, Optional, Set, Tuple

PAGE = mmap.PAGESIZE
SYS_CACHESTAT = 451  # same number on x86_64 and aarch64 (the generic syscall table)
MINCORE_WINDOW = 1 << 30  # map huge files 1 GiB at a time to bound the mincore vector

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_MAP_FAILED = ctypes.c_void_p(-1).value
_LOW_BIT = bytes(i & 1 for i in range(256))


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


class Residency(NamedTuple):
    files: int
    size_bytes: int
    pages: int
    resident_pages: int

    @property
    def resident_bytes(self) -> int:
        return self.resident_pages * PAGE

    @property
    def ratio(self) -> float:
        return self.resident_pages / self.pages if self.pages else 0.0


class Scanner:
    """Counts resident pages of files; `method` is 'cachestat' or 'mincore'."""

    def __init__(self, method: Optional[str] = None) -> None:
        self._range = _Range(0, 0)  # offset 0, length 0 = to the end of the file
        self._stat = _Cachestat()
        self.method = method or ("cachestat" if self._has_cachestat() else "mincore")
        self._resident = self._cachestat if self.method == "cachestat" else self._mincore

    def _has_cachestat(self) -> bool:
        fd = os.open(sys.executable, os.O_RDONLY)
        try:
            self._cachestat(fd, 1)
            return True
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EPERM):  # old kernel, or a seccomp filter
                return False
            raise
        finally:
            os.close(fd)

    def _cachestat(self, fd: int, size: int) -> int:
        if _libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(self._range), ctypes.byref(self._stat), 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return self._stat.nr_cache

    def _mincore(self, fd: int, size: int) -> int:
        resident = 0
        for offset in range(0, size, MINCORE_WINDOW):
            length = min(MINCORE_WINDOW, size - offset)
            addr = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
            if addr == _MAP_FAILED:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            try:
                pages = (length + PAGE - 1) // PAGE
                vec = ctypes.create_string_buffer(pages)
                if _libc.mincore(addr, length, vec) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, os.strerror(e))
                resident += vec.raw[:pages].translate(_LOW_BIT).count(1)
            finally:
                _libc.munmap(addr, length)
        return resident

    def file_pages(self, path: str, seen: Set[Tuple[int, int]]) -> Optional[Tuple[int, int, int]]:
        """(size, pages, resident pages) of one file, or None for a hard link already counted."""
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    return None
                seen.add(key)
            size = st.st_size
            pages = (size + PAGE - 1) // PAGE
            return size, pages, min(pages, self._resident(fd, size)) if size else 0
        finally:
            os.close(fd)

    def scan(self, root: str) -> Residency:
        """Residency of a file or of every regular file below a directory."""
        files = size = pages = resident = 0
        seen = set()  # type: Set[Tuple[int, int]]
        for path in _regular_files(root):
            got = self.file_pages(path, seen)
            if got is None:
                continue
            files += 1
            size += got[0]
            pages += got[1]
            resident += got[2]
        return Residency(files, size, pages, resident)


def _regular_files(root: str) -> Iterator[str]:
    if not os.path.isdir(root):
        if not os.path.isfile(root):
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", root)
        yield root
        return
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.path
