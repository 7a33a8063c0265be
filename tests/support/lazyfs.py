"""A file system that loses what was not fsynced, for power-cut tests (after LazyFS, Jepsen).

``python -m tests.support.lazyfs BACKING MOUNT`` serves BACKING at MOUNT through FUSE. Data
writes and truncations are kept in memory, per file, until the file is fsynced; only then do
they reach BACKING (and its fsync). Reads see the pending writes, as a page cache does. So at
any moment BACKING holds exactly what would survive a power cut. Metadata operations (create,
unlink, rename, mkdir) reach BACKING at once: the model is "data is lost unless synced".

A power cut is asked for by writing a directory path to the file ``/.power-cut`` in MOUNT: the
server copies BACKING there (operations are served one at a time, so the copy is one instant),
and that copy is the image a hub boots from after the cut. The process keeps serving.

Writing a reason (``full``, ``eio`` or ``read_only``) to ``/.fault`` makes every later data
write and fsync fail with ENOSPC, EIO or EROFS (as after ext4's ``errors=remount-ro``, which a
test cannot trigger on a file system with files open for writing); writing ``none`` ends it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Final

import mfusepy as fuse

POWER_CUT: Final = "/.power-cut"
FAULT: Final = "/.fault"
_CONTROL: Final = (POWER_CUT, FAULT)
_FAULT_ERRNO: Final = {"full": errno.ENOSPC, "eio": errno.EIO, "read_only": errno.EROFS}


@dataclass
class _Pending:
    """Unsynced operations on one file, in order: ("w", offset, data) or ("t", length)."""

    ops: list[tuple[Any, ...]] = field(default_factory=list)


class LazyFS(fuse.Operations):  # type: ignore[misc]
    """Passthrough to ``backing`` that keeps data operations in memory until fsync."""

    use_ns = True  # utimens gets nanoseconds

    def __init__(self, backing: str) -> None:
        self._root = os.path.realpath(backing)
        self._pending: dict[str, _Pending] = {}
        self._fault: str | None = None

    def _full(self, path: str) -> str:
        return os.path.join(self._root, path.lstrip("/"))

    # --- metadata: straight through --------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """Return the stat of ``path`` with its size as the pending writes make it."""
        if path in _CONTROL:
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0}
        try:
            st = os.lstat(self._full(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno) from None
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_atime",
                "st_ctime",
                "st_gid",
                "st_mode",
                "st_mtime",
                "st_nlink",
                "st_size",
                "st_uid",
            )
        }
        pending = self._pending.get(path)
        if pending is not None:
            attrs["st_size"] = self._size(path, st.st_size, pending)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        """List a directory of the backing tree."""
        return [".", "..", *os.listdir(self._full(path))]

    def mkdir(self, path: str, mode: int) -> int:
        """Create a directory at once."""
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        """Remove a directory at once."""
        os.rmdir(self._full(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        """Change the mode at once."""
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        """Change the owner at once."""
        os.chown(self._full(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        """Change the times at once."""
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=times)
        return 0

    def unlink(self, path: str) -> int:
        """Remove a file (and forget its pending writes)."""
        self._pending.pop(path, None)
        os.unlink(self._full(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        """Rename at once; pending writes follow the file."""
        os.rename(self._full(old), self._full(new))
        if old in self._pending:
            self._pending[new] = self._pending.pop(old)
        return 0

    def access(self, path: str, amode: int) -> int:
        """Everything may be accessed (the test runs as the file owner)."""
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        """Report the backing file system's numbers."""
        st = os.statvfs(self._root)
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    # --- files -----------------------------------------------------------------------------
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """Create a file at once (control files are not created)."""
        if path not in _CONTROL:
            os.close(os.open(self._full(path), os.O_CREAT | os.O_WRONLY, mode))
        return 0

    def open(self, path: str, flags: int) -> int:
        """Open: nothing to hold, every operation names its path."""
        if path not in _CONTROL and not os.path.exists(self._full(path)):
            raise fuse.FuseOSError(errno.ENOENT)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Read the backing bytes with the pending operations laid over them."""
        full = self._full(path)
        with open(full, "rb") as f:
            f.seek(offset)
            buf = bytearray(f.read(size))
            on_disk = os.fstat(f.fileno()).st_size
        buf.extend(bytes(size - len(buf)))
        current = on_disk
        for op in self._pending.get(path, _Pending()).ops:
            if op[0] == "w":
                at, data = op[1], op[2]
                lo, hi = max(at, offset), min(at + len(data), offset + size)
                if lo < hi:
                    buf[lo - offset : hi - offset] = data[lo - at : hi - at]
                current = max(current, at + len(data))
            else:
                length = op[1]
                if length < offset + size:
                    start = max(length - offset, 0)
                    buf[start:] = bytes(len(buf) - start)
                current = length
        return bytes(buf[: max(0, min(size, current - offset))])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        """Keep the write in memory (a control file acts at once)."""
        if path == POWER_CUT:
            self._power_cut(data.decode().strip())
            return len(data)
        if path == FAULT:
            reason = data.decode().strip()
            self._fault = None if reason == "none" else reason
            return len(data)
        self._check_fault()
        self._pending.setdefault(path, _Pending()).ops.append(("w", offset, bytes(data)))
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """Keep the truncation in memory."""
        if path in _CONTROL:
            return 0
        self._pending.setdefault(path, _Pending()).ops.append(("t", length))
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """Apply the file's pending operations to the backing file and fsync it."""
        self._check_fault()
        pending = self._pending.pop(path, None)
        if pending is None:
            return 0
        fd = os.open(self._full(path), os.O_WRONLY)
        try:
            for op in pending.ops:
                if op[0] == "w":
                    os.pwrite(fd, op[2], op[1])
                else:
                    os.ftruncate(fd, op[1])
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        """Directory entries are durable at once in this model."""
        return 0

    def flush(self, path: str, fh: int) -> int:
        """close() syncs nothing."""
        return 0

    def release(self, path: str, fh: int) -> int:
        """Nothing to release."""
        return 0

    def _check_fault(self) -> None:
        if self._fault is not None:
            raise fuse.FuseOSError(_FAULT_ERRNO.get(self._fault, errno.EIO))

    def _size(self, path: str, on_disk: int, pending: _Pending) -> int:
        size = on_disk
        for op in pending.ops:
            size = max(size, op[1] + len(op[2])) if op[0] == "w" else op[1]
        return size

    def _power_cut(self, image: str) -> None:
        # what BACKING holds is what survives; the process goes on serving
        shutil.copytree(self._root, image)


def main() -> None:
    """Serve ``argv[1]`` at ``argv[2]`` until unmounted."""
    backing, mount = sys.argv[1], sys.argv[2]
    fuse.FUSE(LazyFS(backing), mount, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
