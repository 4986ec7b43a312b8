"""Atomic writes: a failed write keeps the previous file and leaves nothing behind; a finished one gets the
permissions a plain open() would give under the umask."""

import subprocess
import sys

import pytest

from aegan.files import atomic_path, write_text
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
    code = (f"import os; os.umask(0o027); from aegan.files import write_text; write_text({str(tmp_path / 'b.csv')!r}, "
            "'x')")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o640  # not the 0600 of its temp file
