"""Atomic writes: a failed write keeps the previous file and leaves nothing behind; a finished one gets the
permissions a plain open() would give under the umask."""

import os
import signal
import sys

import pytest

import progress
from aegan.commands.exits import sigterm_as_interrupt
from aegan.core.errors import AeganError
from aegan.core.files import atomic_path, replace_set, signals_deferred, write_text
from conftest import ROOT


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    f = tmp_path / "out" / "a.csv"
    write_text(f, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert f.read_text() == "old\n" and sorted(p.name for p in f.parent.iterdir()) == ["a.csv"]


def test_finished_files_get_the_umask_permissions(tmp_path):
    code = ("import os; os.umask(0o027); from aegan.core.files import write_text; "
            f"write_text({str(tmp_path / 'b.csv')!r}, 'x')")
    progress.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o640  # not the 0600 of its temp file


def test_a_published_set_is_never_cut_in_two_by_an_interrupt(tmp_path):
    """SIGTERM (and Ctrl-C) arriving while a set of files is renamed into place waits until every file of the set is
    there, then stops the command as it would have: the folder holds the old set or the new one, never a mix."""
    manifest = tmp_path / ".fan_dev.written"
    replace_set(manifest, {tmp_path / f"s{i}.csv": "old\n" for i in range(3)})
    sigterm_as_interrupt()
    interrupted = []
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered inside the block
            replace_set(manifest, {tmp_path / f"s{i}.csv": "new\n" for i in range(2)})
            interrupted.append(False)
    except KeyboardInterrupt:
        interrupted.append(True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert interrupted == [False, True]  # the block ran to its end, then the interrupt came
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fan_dev.written", "s0.csv", "s1.csv"]
    assert all(p.read_text() == "new\n" for p in tmp_path.glob("s*.csv"))


@pytest.mark.parametrize("where", ["folder", "subfolder"])
def test_a_write_into_a_read_only_folder_is_one_line_that_does_not_blame_the_space(read_only, where):
    path = read_only / "a.csv" if where == "folder" else read_only / "sub" / "a.csv"
    for write in (lambda: write_text(path, "x"), lambda: replace_set(read_only / "set.json", {path: "x"})):
        with pytest.raises(AeganError) as e:
            write()
        assert str(e.value) == (f"could not write {path}: Read-only file system (choose a folder you can write); "
                                "the previous file, if any, is unchanged")
