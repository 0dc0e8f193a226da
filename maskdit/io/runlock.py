"""An exclusive, OS-level lock on a run folder, held for as long as a process writes there.

``fcntl.flock`` on ``<run>/.lock``: the kernel drops the lock when the holding process exits
in any way (kill -9 included), so a crash never leaves a stale lock behind. The holder writes
its PID into the file, so a second writer can say who holds the folder.

The lock file of a folder someone else gave us may be planted: it is opened with ``O_NOFOLLOW``
(a symlink is refused), must be a regular file with one link, and an existing one must hold what a
lock holds (a PID or nothing), else the lock refuses naming it. It is never truncated: the PID is
written over a fixed-width record at its start.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from maskdit.config.errors import InputError
from maskdit.io.files import UnsafePathError, open_inside

LOCK_NAME = ".lock"
RECORD = 24  # bytes of the PID record: the PID, a newline, spaces (so it is never truncated)


class RunLockedError(InputError, RuntimeError):
    """Another process holds the run folder; the message names its PID."""


class RunLock:
    """``with RunLock(run_dir): ...`` or ``lock = RunLock(run_dir).acquire()`` ... ``lock.release()``.

    Not re-entrant: a second RunLock on the same folder refuses even in the same process."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = open_inside(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _check_lock_file(fd, self.path)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise RunLockedError(f"{self.run_dir} is in use by {who} (lock {self.path}); wait for it to finish "
                                     "or stop it, or choose another run name") from None
            raise
        except BaseException:
            os.close(fd)
            raise
        _write_record(fd, f"{os.getpid()}")
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _write_record(fd, "")
        except OSError:
            pass
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _check_lock_file(fd: int, path: Path) -> None:
    """An existing lock file must hold a lock's record (a PID, or blanks), nothing else."""
    text = _read_text(fd).strip()
    if os.fstat(fd).st_size > 64 or (text and not text.isdigit()):
        raise UnsafePathError(f"{path} is not a maskdit lock file (it holds other data); refusing to use it "
                              "(remove it if the folder is yours)")


def _write_record(fd: int, text: str) -> None:
    """Write ``text`` over the fixed-width record at the start of the lock file, never truncating."""
    record = (text + "\n").ljust(RECORD).encode("ascii")
    os.pwrite(fd, record, 0)


def _read_text(fd: int) -> str:
    return os.pread(fd, 64, 0).decode("ascii", "replace")


def _read_pid(fd: int) -> str:
    try:
        text = _read_text(fd).strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
