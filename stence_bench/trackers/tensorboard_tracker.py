"""The TensorBoard tracker (``[trackers.tensorboard]``): event files through ``torch.utils.tensorboard``.

Under ``log_dir`` (default ``<run>/tensorboard``), one TensorBoard run (folder) per cell,
``<stage>/<label>-<key>``, with the scalars ``loss`` at every pretraining step, ``epoch/loss`` or
``epoch/val_loss`` at every epoch and the scores (``test/auroc``, ``val/auroc``, ``test/auroc_ci_low``, ...) at
step 0, and the texts ``config`` (the cell's resolved config) and ``status``; and the folder ``run`` with the texts
``suite`` and ``leaderboard`` (the results table; also written to ``<log_dir>/leaderboard.txt``). A re-run of the
folder appends to the same cells' folders: a resumed pretraining goes on along its step axis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.store import write_atomic
from . import Tracker, config, log, scores, slug


def _code(text: str) -> str:
    """Text shown as written by TensorBoard's text plugin (markdown): every line indented as code."""
    return "\n".join("    " + line for line in text.splitlines())


class TensorboardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, settings: Any, root: Path):
        super().__init__(settings, root)
        self.log_dir = self.path(settings.log_dir, "tensorboard")
        self._writers: dict[tuple[int, str], Any] = {}  # (process, folder) -> SummaryWriter

    def writer(self, folder: str) -> Any:
        """This process's writer of ``folder`` (a forked worker opens its own: a writer's thread does not fork)."""
        key = (os.getpid(), folder)
        if key not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[key] = SummaryWriter(log_dir=str(self.log_dir / folder))
        return self._writers[key]

    @staticmethod
    def folder(cell: Any) -> str:
        return f"{cell.stage}/{slug(cell.label)}-{cell.key}"

    def start(self, suite: Any, cells: Sequence[Any]) -> None:
        self.writer("run").add_text("suite", _code(json.dumps(suite.model_dump(mode="json"), indent=1)))
        self.writer("run").flush()
        log.debug(f"tracker tensorboard: event files in {self.log_dir}")

    def log_epoch(self, cell: Any, epoch: int, metrics: dict[str, float], steps: list[tuple[int, float]]) -> None:
        writer = self.writer(self.folder(cell))
        for step, loss in steps:
            writer.add_scalar("loss", loss, step)
        for name, value in metrics.items():
            writer.add_scalar(f"epoch/{name}", value, epoch)
        writer.flush()  # a forked worker may end without closing it

    def log_cell(self, cell: Any, outcome: Any, result: Any) -> None:
        folder = self.folder(cell)
        writer = self.writer(folder)
        for name, value in ([] if result is None else scores(result).items()):
            writer.add_scalar(name, value, 0)
        for epoch, loss in enumerate(self.replayed_losses(outcome, result), start=1):  # (an earlier run, a job)
            writer.add_scalar("epoch/loss", loss, epoch)
        writer.add_text("config", _code(json.dumps(config(cell), indent=1)))
        status = outcome.status + (f": {outcome.error}" if outcome.error else "")
        if result is not None and result.metric:
            status += f" (main metric: {result.metric})"
        writer.add_text("status", status)
        writer.close()
        self._writers.pop((os.getpid(), folder), None)

    def finish(self, suite: Any, outcomes: Sequence[Any], leaderboard: str) -> None:
        if leaderboard:
            self.writer("run").add_text("leaderboard", _code(leaderboard))
            self.log_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.log_dir / "leaderboard.txt", leaderboard)
        counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "cached", "failed")}
        for status, n in counts.items():
            self.writer("run").add_scalar(f"cells/{status}", n, 0)

    def close(self) -> None:
        pid = os.getpid()
        for key in [k for k in self._writers if k[0] == pid]:
            self._writers.pop(key).close()
