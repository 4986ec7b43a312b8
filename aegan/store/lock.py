"""`<mt>.lock`: one training run per machine type and model_dir at a time. flock on the file, so that the kernel
releases it however its process ends; the file names its holder (pid, host, start) for the message a second run
gives. (filelock, the well-kept library, neither names its holder nor removes its file when released.)"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.store.model_dir import ModelDir


@contextlib.contextmanager
def training_lock(files: ModelDir) -> Iterator[Path]:
    """Held for a whole training run of a machine type in a model_dir. The kernel releases it when its process
    dies, however it dies, so the lock of a killed run is taken over; the file is removed when the run ends."""
    path = files.lock
    created = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise AeganError(f"cannot write in model_dir {shown(path.parent)}: {e.strerror or e} (make it writable, "
                             "or set model_dir to a folder you can write)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AeganError(f"{shown(files.folder / files.mt)} is being trained by {holder} (lock {shown(path)}): "
                             "wait for that run to end, or give this one another model_dir") from None
        try:  # the file may have been removed by its previous holder between our open and lock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    left = os.read(fd, 512).decode(errors="replace").strip()
    if left:
        print(f"model: took over the lock {shown(path)} left by {left}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
              .encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty model_dir behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()
