"""The MLflow tracker (``[trackers.mlflow]``): one MLflow run per ``stence-bench run``, one nested run per cell.

- The parent run is named after the suite; it holds the suite (``suite.json``), the results table at the end
  (``leaderboard.txt``), and the counts of cells done, cached and failed.
- Each cell's run (tag ``mlflow.parentRunId``; run name: the cell's label) holds its config as parameters
  (flattened: ``stage``, ``encoder``, ``settings.pretrain.epochs``, ...) and whole as ``cell.json``, tags
  ``stence_bench.key``, ``stence_bench.stage``, ``stence_bench.status`` and ``stence_bench.main_metric``; the
  scores (``test/auroc``, ``val/auroc``, ``test/auroc_ci_low``, ...); for a pretraining, ``loss`` at every step
  and ``epoch/loss`` at every epoch; for a finetuning, ``epoch/val_loss``.

Every call goes through ``MlflowClient`` with explicit run ids (no global active run), one client per process.
The default store is the local file store ``<run>/mlruns``; MLflow 3 keeps that store in maintenance mode
behind ``MLFLOW_ALLOW_FILE_STORE``, which this tracker sets for a ``file:`` store when it is unset.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import Tracker, TrackerError, config, flat, log, scores

#: MLflow's limits: a parameter's value, a tag's value.
MAX_PARAM = 6000
MAX_TAG = 5000


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, settings: Any, root: Path):
        super().__init__(settings, root)
        self.uri = self._uri(settings.tracking_uri)
        self._clients: dict[int, Any] = {}
        self.parent: str | None = None
        self.runs: dict[str, str] = {}  # cell key -> run id
        self.open: set[str] = set()  # run ids not yet terminated

    def _uri(self, given: str | None) -> str:
        scheme = urlparse(given).scheme if given else ""
        if given and scheme not in ("", "file"):
            return given  # sqlite:, http(s):, databricks, ...: as given
        path = given[len("file:"):] if given and scheme == "file" else given
        if path and path.startswith("//"):
            path = path[2:]
        return self.path(path, "mlruns").as_uri()

    @property
    def client(self) -> Any:
        """This process's client (a forked worker makes its own: no connection crosses a fork)."""
        pid = os.getpid()
        if pid not in self._clients:
            from mlflow import MlflowClient

            if self.uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            try:
                self._clients[pid] = MlflowClient(tracking_uri=self.uri)
            except Exception as exc:  # noqa: BLE001 - MLflow's own error, in one line
                raise TrackerError(f"tracker 'mlflow': cannot open the tracking store {self.uri}: "
                                   f"{str(exc).splitlines()[0]}") from None
        return self._clients[pid]

    def start(self, suite: Any, cells: Sequence[Any]) -> None:
        client = self.client
        name = self.settings.experiment or suite.name
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        tags = {"stence_bench.suite": suite.name, "stence_bench.run_folder": str(self.root.resolve())}
        self.parent = client.create_run(experiment_id, run_name=suite.name, tags=tags).info.run_id
        self.open.add(self.parent)
        client.log_dict(self.parent, suite.model_dump(mode="json"), "suite.json")
        # every cell's run now, before cells train in forked workers (which log their epochs into it)
        for cell in cells:
            run = client.create_run(experiment_id, run_name=cell.label, tags={
                "mlflow.parentRunId": self.parent, "stence_bench.key": cell.key, "stence_bench.stage": cell.stage})
            self.runs[cell.key] = run.info.run_id
            self.open.add(run.info.run_id)
            self._log_config(run.info.run_id, cell)
        log.debug(f"tracker mlflow: run {self.parent} in experiment {name!r} of {self.uri}")

    def _log_config(self, run_id: str, cell: Any) -> None:
        from mlflow.entities import Param

        params = [Param(k, v[:MAX_PARAM]) for k, v in flat(config(cell)).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run_id, params=params[start:start + 100])
        self.client.log_dict(run_id, config(cell), "cell.json")

    def log_epoch(self, cell: Any, epoch: int, metrics: dict[str, float], steps: list[tuple[int, float]]) -> None:
        from mlflow.entities import Metric

        run_id = self.runs.get(cell.key)
        if run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric("loss", loss, now, step) for step, loss in steps]
        batch += [Metric(f"epoch/{name}", value, now, epoch) for name, value in metrics.items()]
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=batch[start:start + 1000])

    def log_cell(self, cell: Any, outcome: Any, result: Any) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self.runs.get(cell.key)
        if run_id is None:
            return
        now = int(time.time() * 1000)
        metrics = [] if result is None else [Metric(k, v, now, 0) for k, v in scores(result).items()]
        losses = self.replayed_losses(outcome, result)  # its epochs ran in an earlier run, or a SLURM job
        metrics += [Metric("epoch/loss", v, now, i) for i, v in enumerate(losses, start=1)]
        tags = [RunTag("stence_bench.status", outcome.status)]
        if result is not None and result.metric:
            tags.append(RunTag("stence_bench.main_metric", result.metric))
        if outcome.error:
            tags.append(RunTag("stence_bench.error", outcome.error[:MAX_TAG]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self._end(run_id, "FAILED" if outcome.status == "failed" else "FINISHED")

    def finish(self, suite: Any, outcomes: Sequence[Any], leaderboard: str) -> None:
        from mlflow.entities import Metric

        if self.parent is None:
            return
        now = int(time.time() * 1000)
        counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "cached", "failed")}
        self.client.log_batch(self.parent, metrics=[Metric(f"cells/{k}", v, now, 0) for k, v in counts.items()])
        if leaderboard:
            self.client.log_text(self.parent, leaderboard, "leaderboard.txt")
        self.client.log_text(self.parent, json.dumps([o.model_dump(mode="json") for o in outcomes], indent=1),
                             "outcomes.json")
        self._end(self.parent, "FAILED" if counts["failed"] else "FINISHED")

    def close(self) -> None:
        """Runs still open (an interrupted run: cells never reached, the parent) are marked killed."""
        for run_id in sorted(self.open):
            self._end(run_id, "KILLED")

    def _end(self, run_id: str, status: str) -> None:
        if run_id in self.open:
            self.client.set_terminated(run_id, status)
            self.open.discard(run_id)
