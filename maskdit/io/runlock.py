"""An exclusive, OS-level lock on a run folder, held for as long as a process writes there.

``fcntl.flock`` on ``<run>/.lock``: the kernel drops the lock when the holding process exits
in any way (kill -9 included), so a crash never leaves a stale lock behind. The holder writes
its PID into the file, so a second writer can say who holds the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from maskdit.config.errors import InputError

LOCK_NAME = ".lock"


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise RunLockedError(f"{self.run_dir} is in use by {who} (lock {self.path}); wait for it to finish "
                                     "or stop it, or choose another run name") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
