"""The tests' only guard against a hung child process: it fires on a child that makes no progress, never on a slow one.

A child (with every process it started) that writes nothing to the pipes we read and uses no CPU time for
NO_PROGRESS seconds is stuck: waiting on a lock, a peer or a signal that never comes. It is killed, and the test fails
naming the command. A child that works, however slowly the machine lets it (a loaded CI runner, 2 cores shared by
many), keeps using CPU time and is waited for as long as it takes: no wall-clock limit a passing run can reach."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Minutes with neither output nor CPU time: a working child never sits that still (a training step, a feature
# extraction, a poll of a queue all use CPU time within seconds), a stuck one sits still forever.
NO_PROGRESS = 300.0
POLL = 0.25


class Hung(AssertionError):
    """A child made no progress for the watch's window; it was killed."""


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks of the process and of its children it has waited for); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the name: state, ppid, ... utime (14th field of the line), stime, cutime, cstime
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def tree(roots: tuple[int, ...]) -> dict[int, int]:
    """{pid: CPU ticks} of the roots and of every process below them."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (s := _stat(int(name))) is not None:
            stats[int(name)] = s
    found = {pid: stats[pid][1] for pid in roots if pid in stats}
    grew = True
    while grew:
        below = {pid: s[1] for pid, s in stats.items() if s[0] in found and pid not in found}
        found.update(below)
        grew = bool(below)
    return found


class Watch:
    """Progress of one or more child processes (and their descendants): CPU time read from /proc, output reported by
    whoever reads the child's pipes. `check()` kills them all and raises Hung after `window` seconds of neither."""

    def __init__(self, *pids: int, window: float | None = None, what: str = "a child process") -> None:
        self.pids, self.what = pids, what
        self.window = NO_PROGRESS if window is None else window
        self._cpu = sum(tree(pids).values())
        self._last = time.monotonic()

    def saw_output(self) -> None:
        self._last = time.monotonic()

    def check(self) -> None:
        procs = tree(self.pids)
        cpu = sum(procs.values())
        if cpu != self._cpu:
            self._cpu, self._last = cpu, time.monotonic()
        elif time.monotonic() - self._last > self.window:
            for pid in procs:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise Hung(f"{self.what} made no progress (no output, no CPU time) for {self.window:.0f} s: killed")


def _drain(stream, chunks: list[bytes], watch: Watch) -> None:
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        chunks.append(chunk)
        watch.saw_output()


def communicate(proc: subprocess.Popen, *, window: float | None = None, also: tuple[int, ...] = ()) -> tuple:
    """As proc.communicate(), under a Watch instead of a timeout: (stdout, stderr), text if the Popen was. `also`:
    other processes whose progress is the child's (daemons that run its jobs)."""
    watch = Watch(proc.pid, *also, window=window, what=f"{proc.args!r}"[:300])
    streams = {name: getattr(proc, name) for name in ("stdout", "stderr")}
    got = {name: [] for name in streams}
    readers = [threading.Thread(target=_drain, args=(s, got[n], watch), daemon=True)
               for n, s in streams.items() if s is not None]
    for t in readers:
        t.start()
    try:
        while True:
            try:  # returns as soon as the child ends; the watch looks at /proc once a second (2 ms of CPU)
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                watch.check()
    finally:
        proc.wait()
        for t in readers:
            t.join()
        for s in streams.values():
            if s is not None:
                s.close()
    return tuple(None if streams[n] is None else _joined(got[n], bool(proc.text_mode)) for n in streams)


def _joined(chunks: list[bytes], text: bool) -> str | bytes:
    data = b"".join(chunks)
    # as subprocess's text mode reads: universal newlines (a progress bar's \r ends a line)
    return data.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n") if text else data


def run(args, *, capture_output: bool = False, text: bool = False, check: bool = False,
        window: float | None = None, also: tuple[int, ...] = (), **popen) -> subprocess.CompletedProcess:
    """As subprocess.run(), with the progress guard for a timeout; pipes read as bytes, decoded at the end."""
    if capture_output:
        popen["stdout"] = popen["stderr"] = subprocess.PIPE
    proc = subprocess.Popen(args, **popen)
    proc.text_mode = text
    out, err = communicate(proc, window=window, also=also)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def read_until(proc: subprocess.Popen, done: Callable[[bytes], bool], *, window: float | None = None) -> bytearray:
    """Read the child's stdout (bytes) as it streams until `done(what was read)`: an event, not a number of seconds;
    a child that ends or stops progressing before it fails the test."""
    watch = Watch(proc.pid, window=window, what=f"{proc.args!r}"[:300])
    out = bytearray()
    while not done(bytes(out)):
        ready, _, _ = select.select([proc.stdout], [], [], POLL)
        if not ready:
            assert proc.poll() is None, f"ended before the event: {out[-2000:].decode(errors='replace')}"
            watch.check()
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"ended before the event: {out[-2000:].decode(errors='replace')}"
        out += chunk
        watch.saw_output()
    return out


def wait_for(condition: Callable[[], bool], *pids: int, what: str, window: float | None = None) -> None:
    """Wait until `condition()` holds while the processes `pids` (and their descendants) make progress."""
    watch = Watch(*pids, window=window, what=f"waiting for {what}")
    while not condition():
        watch.check()
        time.sleep(POLL)
