"""Progress where a person waits (tqdm, on stderr), lines where nobody watches: off a terminal (a log, a pipe) a
redrawn bar would leave a frame per refresh, so there a bar is a status line on stdout every LINE_EVERY seconds
and one at its end if it printed any (a short bar prints nothing)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from aegan.core.files import write_text

T = TypeVar("T")
LINE_EVERY = 60.0  # seconds between progress lines off a terminal


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss (m:ss under an hour)."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def on_terminal() -> bool:
    return sys.stderr.isatty()


class Bar:
    """`items` with their progress shown (module docstring); `start_line`: a line when it starts too (an epoch)."""

    def __init__(self, items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
                 disable: bool = False, start_line: bool = False):
        self.items, self.desc, self.unit, self.disable, self.done = items, desc, unit, disable, 0
        self.start_line = start_line
        try:
            self.total = total if total is not None else len(items)  # type: ignore[arg-type]
        except TypeError:  # a generator
            self.total = None
        self.tqdm = None if disable or not on_terminal() else tqdm(
            items, desc=desc, total=self.total, unit=unit, leave=False)
        self.values = ""

    def note(self, **values: str) -> None:
        """The latest values beside the bar: its postfix, or the end of the next line."""
        if self.tqdm is not None:
            self.tqdm.set_postfix(values)
        self.values = ", ".join(f"{k}={v}" for k, v in values.items())

    def __iter__(self) -> Iterator[T]:
        if self.disable:
            yield from self.items
        elif self.tqdm is not None:
            with self.tqdm:
                yield from self.tqdm
        else:
            yield from self._lines()

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}" + (f" [{self.values}]" if self.values else ""), flush=True)

    def _lines(self) -> Iterator[T]:
        start = last = time.monotonic()
        total = self.total
        of = f"/{total}" if total is not None else ""
        if self.start_line:
            self._line(f"{self.done}{of} {self.unit}")
        wrote = False
        for item in self.items:
            yield item
            self.done += 1
            now = time.monotonic()
            if now - last >= LINE_EVERY:
                last, wrote = now, True
                left = (f", ~{clock((now - start) / self.done * (total - self.done))} left"
                        if total and self.done < total else "")
                share = f" ({100 * self.done / total:.0f}%)" if total else ""
                self._line(f"{self.done}{of} {self.unit}{share}, {clock(now - start)} elapsed{left}")
        if wrote:
            self._line(f"{self.done}{of} {self.unit} in {clock(time.monotonic() - start)}")


# ---- a training run's epochs, for whoever follows it from outside (the reproduce launchers) ----------------
def epochs_file(log_dir: str | Path, mt: str) -> Path:
    """<log_dir>/<mt>/progress.json: the epochs a training run has trained, rewritten after each."""
    return Path(log_dir) / mt / "progress.json"


def write_epochs(path: Path, epoch: int, epochs: int, first: int, seconds: float) -> None:
    """After epoch `epoch` (1-based) of `epochs`: this process started at epoch `first` (a resumed run later than
    1) and has trained for `seconds`."""
    write_text(path, json.dumps({"epoch": epoch, "epochs": epochs, "first": first, "seconds": round(seconds, 1)}))


def read_epochs(path: Path) -> dict | None:
    """The last write_epochs record, or None (none yet, or unreadable: a follower just waits for the next)."""
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) and {"epoch", "epochs", "first", "seconds"} <= set(record) else None
    except (OSError, ValueError):
        return None


def epochs_line(record: dict) -> str:
    """'epoch 3/60, 0:31:10 trained, ~9:20:00 left' from a write_epochs record."""
    done = record["epoch"] - record["first"] + 1
    left = record["seconds"] / done * (record["epochs"] - record["epoch"]) if done > 0 else 0.0
    return (f"epoch {record['epoch']}/{record['epochs']}, {clock(record['seconds'])} trained"
            + (f", ~{clock(left)} left" if record["epoch"] < record["epochs"] else ""))
