"""The hang guard of the tests (tests/progress.py): a child that sits still is killed after the window, a child that
works slowly or only talks is waited for, however long it takes."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

import progress

BUSY = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}: sum(range(1000))\nprint('done')"


def test_a_silent_sleeping_child_is_killed_after_the_window():
    t0 = time.monotonic()
    with pytest.raises(progress.Hung, match="no progress"):
        progress.run([sys.executable, "-c", "import time; time.sleep(600)"], capture_output=True, window=2)
    assert time.monotonic() - t0 < 60  # killed, not waited for the 600 s


def test_a_sleeping_grandchild_is_killed_too():
    code = "import subprocess, sys; print('started', flush=True); subprocess.run(['sleep', '600'])"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    progress.read_until(proc, lambda out: b"started" in out)
    time.sleep(0.5)
    below = [pid for pid in progress.tree((proc.pid,)) if pid != proc.pid]
    assert below  # the sleep
    with pytest.raises(progress.Hung):
        progress.communicate(proc, window=2)
    assert proc.returncode == -9
    t0 = time.monotonic()  # SIGKILL takes effect when the kernel next schedules the process: moments
    while not all(_dead(pid) for pid in below):
        assert time.monotonic() - t0 < 60, below
        time.sleep(0.05)


def _dead(pid: int) -> bool:
    """Gone, or a zombie that its new parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("where", ["child", "grandchild"])
def test_a_busy_child_longer_than_the_window_is_waited_for(where):
    code = BUSY.format(s=6)
    if where == "grandchild":  # the child itself only waits: its descendant's CPU time is its progress
        code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"
    r = progress.run([sys.executable, "-c", code], capture_output=True, text=True, window=2)
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr


def test_a_child_that_only_talks_is_waited_for():
    code = "import time\nfor i in range(8): print(i, flush=True); time.sleep(0.5)"
    r = progress.run([sys.executable, "-c", code], capture_output=True, text=True, window=2)
    assert r.returncode == 0 and r.stdout.split() == [str(i) for i in range(8)]


def test_text_mode_reads_as_subprocess_does():
    code = "import sys; sys.stdout.write('a\\r\\nb\\rc'); sys.stderr.write('e'); sys.exit(3)"
    r = progress.run([sys.executable, "-c", code], capture_output=True, text=True)
    ref = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (ref.returncode, ref.stdout, ref.stderr) == (3, "a\nb\nc", "e")
