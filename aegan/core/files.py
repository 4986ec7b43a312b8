"""Atomic file writes: a crash or a full disk never leaves a half-written result behind. A write goes to
`.<name>.<host>.<pid>.<random>.tmp` beside its target, renamed over it when complete; the next write into the folder
removes the temps of this host's dead processes (killed mid-write), never those of live ones or other hosts."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import os
import re
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from aegan.core.errors import AeganError, shown

# What this process has written, in order (every atomic write, and each published set): a command's interruption
# line says what it had finished from these.
WRITTEN: list[Path] = []
PUBLISHED: list[Path] = []
_DEFERRING: list[bool] = []


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block has run (it must be short), then raise KeyboardInterrupt: a set of
    renames is never cut in two."""
    if threading.current_thread() is not threading.main_thread() or _DEFERRING:
        yield  # signals go to the main thread; an outer block already defers them
        return
    caught: list[int] = []
    _DEFERRING.append(True)
    saved = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _DEFERRING.pop()
        for s, handler in saved.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


_UMASK = os.umask(0)  # the umask is only read by setting it: set it back
os.umask(_UMASK)
# a temp file is created 0600; the finished file gets what a plain open() would give under the umask
MODE = 0o666 & ~_UMASK
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _temp_beside(path: Path) -> Path:
    """A new temp file beside `path`, once the temp files that dead processes of this host left there are gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        entries = []
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and m["host"] == HOST and not _running(int(m["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def dangling_link(path: str | os.PathLike) -> str | None:
    """'<path> is a symbolic link to <target>, which does not exist' when it is one: every reader names it so."""
    if not os.path.islink(path):
        return None
    return f"{shown(path)} is a symbolic link to {shown(os.readlink(path))}, which does not exist"


def check_regular(path: str | os.PathLike) -> None:
    """A FIFO, device or folder named like a WAV would block or fail inside the decoder: refused unopened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if link := dangling_link(path):
            raise AeganError(f"{link}: restore the clip or remove the link") from None
        raise AeganError(f"audio file not found: {shown(path)}") from None
    except OSError as e:
        raise AeganError(f"cannot read audio file {shown(path)}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AeganError(f"{shown(path)} is not a regular file (a folder, FIFO or device): give a WAV file")


def sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:  # a folder that cannot be made or written is the same one line as a write that fails
        tmp_path = _temp_beside(path)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        yield tmp_path
        os.chmod(tmp_path, MODE)
        os.replace(tmp_path, path)
        WRITTEN.append(path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def out_of_space(e: BaseException) -> bool:
    """Whether a failed write ran out of disk space, quota or the largest file allowed."""
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _advice(e: BaseException, writing: bool) -> str | None:
    """What to do about a failed file operation, where its error says (`writing`: it was a write)."""
    code = getattr(e, "errno", None)
    if out_of_space(e):
        return "free some space, or choose another output folder"
    if code == errno.EROFS or writing and code in (errno.EACCES, errno.EPERM):
        return "choose a folder you can write"
    return "choose another output folder" if writing else None


def os_error_line(e: OSError) -> str:
    """A file-system failure no command foresaw (a log folder on a full disk) as one line: the path, what to do."""
    where = f"{shown(e.filename)}: " if e.filename is not None else ""
    advice = _advice(e, writing=False)
    return f"{where}{e.strerror or e}" + (f" ({advice})" if advice else "")


def write_error(path: Path, e: BaseException) -> AeganError:
    """One line for a write that failed (a full disk, a read-only folder), naming the file."""
    text = str(e).strip()
    why = getattr(e, "strerror", None) or (text.splitlines()[0] if text else type(e).__name__)
    return AeganError(f"could not write {shown(path)}: {why} ({_advice(e, writing=True)}); the previous file, if "
                      "any, is unchanged")


def csv_text(header: list[str], rows: list[list]) -> str:
    """Rows as CSV text, quoted where a value needs it (every table this project writes; no header when empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_set(manifest: Path, files: dict[Path, str]) -> list[Path]:
    """Publish `files` all or none as the set `manifest` records (a submission's files in a shared folder), removing
    the previous set's other files, so a folder never mixes two runs; returns the removed files."""
    old = []
    if manifest.is_file():
        old = [manifest.parent / line for line in manifest.read_text().splitlines() if line and "/" not in line]
    temps: dict[Path, Path] = {}
    with signals_deferred():  # the new set, the old one's leftovers gone and the record of it: one step
        try:  # every file complete in its temp before the first rename (renames need no space)
            for path, text in files.items():
                temps[path] = _temp_beside(path)
                temps[path].write_text(text)
                os.chmod(temps[path], MODE)
        except OSError as e:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            raise write_error(path, e) from None
        for path, tmp in temps.items():
            os.replace(tmp, path)
        PUBLISHED.extend(temps)
        WRITTEN.extend(temps)
        removed = [p for p in old if p not in files and p.exists()]
        for p in removed:
            p.unlink()
        write_text(manifest, "".join(f"{p.name}\n" for p in files))
    return removed
