"""A training run's TensorBoard events (rank 0): loss/ on the batch axis (the global iteration) in the run folder;
epoch/, lr/, a chart per evaluation quantity of the metrics and selection/ on the epoch axis (step = epoch) in its
`epochs` subfolder (TensorBoard's run `<run>/epochs`); the settings as hparams at the end. A resumed run purges what
the stopped one logged after its last run state, in each folder on its own axis (purge_step)."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from aegan.core.errors import AeganError, shown
from aegan.core.files import out_of_space
from aegan.core.metrics import metric_names
from aegan.scoring.evaluation import Results, Rule
from aegan.settings.layers import leaves

EPOCHS = "epochs"  # the subfolder of the per-epoch charts


def folder(cfg: dict, mt: str, seed: int, run_id: str) -> Path:
    """The run folder of a training run's events."""
    root = Path(cfg["tb_dir"]) / mt if cfg.get("tb_dir") else Path(cfg["log_dir"]) / mt / "tb"
    return root / f"seed{seed}-{run_id[:8]}"


def _quiet_writer_thread(args) -> None:
    """The event writer's thread fails silently: its next call raises the error where `writing` makes it one line."""
    frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback else []
    if not any(f.filename.endswith("event_file_writer.py") for f in frames):
        _PYTHON_HOOK(args)


_PYTHON_HOOK = threading.excepthook


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write of the events (a full disk, a file where the folder goes) stops the run in one line."""
    try:
        yield
    except OSError as e:
        fix = "free some space or set" if out_of_space(e) else "set"  # the folder: tb_dir
        raise AeganError(f"could not write the TensorBoard events in {shown(path)}: {e.strerror or e} ({fix} tb_dir "
                         "to a folder you can write, or --set train.tensorboard=false; --resume continues from the "
                         "last completed epoch)") from None


class Events:
    """The writer of one run's events; every method does nothing when the run logs none."""

    def __init__(self, path: Path | None, rule: Rule, resumed_at: int | None, iterations: int):
        """`resumed_at`: the epochs a resumed run had completed (None: a new run); `iterations` per epoch."""
        self.rule, self.path, self.writer, self.epochs = rule, path, None, None
        if path is not None:
            threading.excepthook = _quiet_writer_thread
            with writing(path):
                self.new = resumed_at is None
                self.writer = SummaryWriter(str(path), purge_step=None if self.new else resumed_at * iterations + 1,
                                            flush_secs=60)
                self.epoch_purge = None if self.new else resumed_at + 1

    def epoch_writer(self) -> SummaryWriter | None:
        """The epoch axis's writer, made at its first event (after the epoch's run state is saved)."""
        if self.epochs is None and self.writer is not None:
            self.epochs = SummaryWriter(str(self.path / EPOCHS), purge_step=self.epoch_purge, flush_secs=60)
            if self.new:  # the charts of one quantity, all metrics
                charts = {q: ["Multiline", [f"^{q}/"]] for q in self.rule.summary_columns}
                self.epochs.add_custom_scalars({"evaluation (%)": charts})
        return self.epochs

    def scalars(self, step: int, values: dict[str, float], per_epoch: bool = True) -> None:
        """`values` at `step`: an epoch on the epoch axis, else a global iteration."""
        if self.writer is None:
            return
        with writing(self.path):
            writer = self.epoch_writer() if per_epoch else self.writer
            for tag, value in values.items():
                writer.add_scalar(tag, value, step)

    def losses(self, step: int, mean: dict[str, float]) -> None:
        self.scalars(step, {f"loss/{k}": v for k, v in mean.items()}, per_epoch=False)

    def epoch(self, epoch: int, mean: dict[str, float], seconds: float, segments: int, lrs: tuple[float, float]
              ) -> None:
        """Epoch `epoch`'s (1-based) loss means, time and learning rates."""
        self.scalars(epoch, {**{f"epoch/{k}": v for k, v in mean.items()}, "epoch/seconds": seconds,
                            "epoch/segments_per_second": segments / seconds, "lr/D": lrs[0], "lr/G": lrs[1]})
        self.flush()

    def evaluation(self, epoch: int, results: Results, best: dict, improved: bool) -> None:
        """Epoch `epoch`'s every metric's summary in %; the selection when this epoch changed it."""
        columns = self.rule.summary_columns
        self.scalars(epoch, {f"{q}/{m}": 100 * s[q] for m, (_, s) in results.items() for q in columns})
        if improved:
            self.scalars(epoch, {"selection/epoch": best["epoch"], "selection/value": 100 * best["value"]})
            if self.writer is not None:
                with writing(self.path):
                    self.epoch_writer().add_text("selection/metric", best["metric"], epoch)
        self.flush()

    def finish(self, step: int, cfg: dict, best: dict) -> None:
        """The run's settings as hparams, with the selected model's value (%), then the file closed."""
        if self.writer is None:
            return
        settings = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in leaves(cfg)}
        selected = 100 * best["value"]
        try:  # after the model file: a failure here costs the events of the end, not the run
            self.writer.add_scalar("hparam/selected", selected, step)
            for summary in hparams(settings, {"hparam/selected": selected}):
                self.writer.file_writer.add_summary(summary, step)
            self.writer.close()
            if self.epochs is not None:
                self.epochs.close()
        except OSError as e:
            print(f"warning: could not write the run's last TensorBoard events (its hparams) in {shown(self.path)}: "
                  f"{e.strerror or e}; the model file is written", file=sys.stderr)

    def logged(self, epoch: int) -> bool:
        """Whether the evaluation of `epoch` is in the run folder already (a stopped run may have logged it)."""
        if self.writer is None or not (self.path / EPOCHS).is_dir():
            return False
        self.flush()
        events = EventAccumulator(str(self.path / EPOCHS), size_guidance={"scalars": 0})
        events.Reload()
        tag = f"{self.rule.summary_key}/{metric_names()[0]}"
        return tag in events.Tags()["scalars"] and any(e.step == epoch for e in events.Scalars(tag))

    def flush(self) -> None:
        if self.writer is not None:
            with writing(self.path):
                self.writer.flush()
                if self.epochs is not None:
                    self.epochs.flush()
