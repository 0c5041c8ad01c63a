"""The background worker: one job at a time from a visible queue.

A training job is ``python -m genlab fit ...`` in a subprocess (so a crashing or killed
training never takes the server down), which calls :func:`genlab.service.fit_run`. Its
progress is read from the run's files: the trainer's ``checkpoints/metrics.csv`` (in the
run folder, or in its hidden staging sibling while a replacement is trained, see
:func:`genlab.runs.staging_path`) and the sample grids it writes every epoch into
``checkpoints/samples/``. Cancel sends SIGINT (the trainer stops; the checkpoints written
every ``checkpoint_every`` steps are kept); resume runs the same command with ``--resume``.
An evaluation job is ``python -m genlab.ui.evaluate_job`` in a subprocess too: it calls
:func:`genlab.service.evaluate_run` and draws the memorisation and noise-baseline strips.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .limits import MAX_QUEUED_JOBS
from .media import curves_svg, read_curves
from .paths import HTTPError

log = logging.getLogger("genlab.ui")
FINAL = ("done", "failed", "cancelled")
#: where job logs go (hidden: never listed as a run)
JOBS_DIR = ".jobs"
_STEP_FILE = re.compile(r"^(?:train|best)-(\d+)-")


@dataclass
class Job:
    id: str
    kind: str  # "fit" | "evaluate"
    run: str
    spec: dict[str, Any]
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    returncode: int | None = None
    message: str = ""
    resumed_from: str | None = None
    cancel_requested: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "run": self.run,
            "status": self.status,
            "message": self.message,
            "returncode": self.returncode,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "resumed_from": self.resumed_from,
            "max_steps": self.spec.get("max_steps"),
            "model": self.spec.get("model"),
        }


def fit_command(python: str, runs_dir: Path, spec: dict[str, Any], *, resume: bool = False) -> list[str]:
    """The ``genlab fit`` command line of a training job (values checked by the app)."""
    cmd = [python, "-m", "genlab", "fit", spec["model"], "--data", spec["data"], "--out", str(runs_dir / spec["name"])]
    cmd += ["--seed", str(spec.get("seed", 0)), "-n", str(spec.get("n_samples", 64)), "--quiet"]
    for key, value in sorted(spec.get("params", {}).items()):
        cmd += ["-p", f"{key}={json.dumps(value)}"]
    for flag in ("condition", "preset", "max_steps", "checkpoint_every", "sample_every", "score_images"):
        if spec.get(flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(spec[flag])]
    if resume:
        cmd.append("--resume")
    return cmd


class JobQueue:
    """Jobs run one at a time in a worker thread; the queue is visible through :meth:`snapshot`."""

    def __init__(self, runs_dir: Path, *, python: str | None = None, model_cache=None):
        self.runs_dir = Path(runs_dir)
        self.python = python or sys.executable
        self.model_cache = model_cache
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.current: Job | None = None
        self._proc: subprocess.Popen | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._restore()

    # ------------------------------------------------------------------ persistence
    def _record(self, job: Job) -> None:
        """Keep the job on disk (``RUNS_DIR/.jobs/<id>.json``) so that a restarted server
        still lists it and can resume it."""
        from ..io import write_json

        try:
            (self.runs_dir / JOBS_DIR).mkdir(exist_ok=True)
            write_json(self.runs_dir / JOBS_DIR / f"{job.id}.json", {**job.public(), "spec": job.spec})
        except OSError:
            log.warning("cannot record job %s", job.id, exc_info=True)

    def _restore(self) -> None:
        """The jobs of earlier servers; one that was queued or running when its server
        stopped is 'cancelled' (its checkpoints are kept, so it can be resumed)."""
        folder = self.runs_dir / JOBS_DIR
        records = []
        for path in folder.glob("*.json") if folder.is_dir() else []:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                job = Job(
                    str(raw["id"]),
                    str(raw["kind"]),
                    str(raw["run"]),
                    dict(raw["spec"]),
                    status=str(raw["status"]),
                    created=float(raw["created"]),
                    started=raw.get("started"),
                    finished=raw.get("finished"),
                    returncode=raw.get("returncode"),
                    message=str(raw.get("message", "")),
                    resumed_from=raw.get("resumed_from"),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not re.fullmatch(r"[0-9a-f]{12}", job.id) or job.kind not in ("fit", "evaluate"):
                continue
            if job.status not in FINAL:
                job.status, job.message = (
                    "cancelled",
                    "interrupted: the server stopped (resume continues from the last checkpoint)",
                )
                job.finished = job.finished or time.time()
                records.append(job)
            self.jobs[job.id] = job
        for job in records:
            self._record(job)

    # ------------------------------------------------------------------ submitting
    def _start_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, daemon=True, name="genlab-ui-worker")
            self._thread.start()

    def _add(self, job: Job) -> Job:
        with self._cond:
            if len(self.queue) >= MAX_QUEUED_JOBS:
                raise HTTPError(409, f"queue: {MAX_QUEUED_JOBS} jobs are waiting already; cancel one or wait")
            busy = {self.jobs[j].run for j in self.queue} | ({self.current.run} if self.current else set())
            if job.kind == "fit" and job.run in busy:
                raise HTTPError(409, f"run {job.run}: a job for it is queued or running")
            self.jobs[job.id] = job
            self.queue.append(job.id)
            self._record(job)
            self._start_worker()
            self._cond.notify_all()
        return job

    def submit_fit(self, spec: dict[str, Any], *, resume_of: Job | None = None) -> Job:
        job = Job(
            secrets.token_hex(6), "fit", spec["name"], dict(spec), resumed_from=resume_of.id if resume_of else None
        )
        if resume_of is not None:
            job.spec["resume"] = True
        return self._add(job)

    def submit_evaluate(self, run: str, n: int, seed: int) -> Job:
        return self._add(Job(secrets.token_hex(6), "evaluate", run, {"n": n, "seed": seed}))

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f"job {job_id[:40]!r}: no such job")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self._cond:
            if job.status == "queued":
                self.queue.remove(job.id)
                job.status, job.finished, job.message = "cancelled", time.time(), "cancelled before it started"
                self._record(job)
                return job
            if job.status != "running":
                raise HTTPError(409, f"job {job.id}: {job.status}, nothing to cancel")
            job.cancel_requested = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a trainer stops; its last checkpoint stays
        return job

    def resume(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.kind != "fit" or job.status not in ("cancelled", "failed"):
            raise HTTPError(409, f"job {job.id}: only a cancelled or failed training job can be resumed")
        run = self.runs_dir / job.run
        if not (run / "checkpoints").is_dir() or not any((run / "checkpoints").glob("checkpoint-*.json")):
            raise HTTPError(409, f"run {job.run}: no checkpoint to resume from; start a new job")
        return self.submit_fit(job.spec, resume_of=job)

    # ------------------------------------------------------------------ reporting
    def checkpoint_dirs(self, job: Job) -> list[Path]:
        from ..runs import staging_path

        run = self.runs_dir / job.run
        return [run / "checkpoints", staging_path(run) / "checkpoints"]

    def preview_path(self, job: Job) -> Path | None:
        grids = [p for d in self.checkpoint_dirs(job) for p in (d / "samples").glob("epoch-*.png")]
        run = self.runs_dir / job.run
        if not grids and job.status == "done" and (run / "samples.png").is_file():
            return run / "samples.png"
        return max(grids, key=lambda p: (p.stat().st_mtime_ns, p.name)) if grids else None

    def progress(self, job: Job) -> dict[str, Any]:
        """The job, its current step, its loss curve (inline SVG) and whether a preview grid exists."""
        state = job.public()
        if job.kind == "fit":
            csvs = [d / "metrics.csv" for d in self.checkpoint_dirs(job) if (d / "metrics.csv").is_file()]
            csv = max(csvs, key=lambda p: p.stat().st_mtime_ns) if csvs else None
            curves = read_curves(csv) if csv is not None else {"train_loss": [], "val_loss": []}
            steps = [int(x) for pts in curves.values() for x, _ in pts]
            for d in self.checkpoint_dirs(job):
                if d.is_dir():
                    steps += [int(m.group(1)) for m in (_STEP_FILE.match(p.name) for p in d.iterdir()) if m]
            state["step"] = max(steps) if steps else 0
            state["loss_svg"] = curves_svg(curves, width=360, height=160, css_class="curve job-loss")
            last = curves["train_loss"][-1][1] if curves["train_loss"] else None
            state["loss"] = last
            preview = self.preview_path(job)
            state["preview"] = f"/api/jobs/{job.id}/preview.png?v={preview.stat().st_mtime_ns}" if preview else None
        state["queue"] = self.queue_ids()
        return state

    def queue_ids(self) -> list[str]:
        with self._cond:
            return list(self.queue)

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                "current": self.current.public() if self.current else None,
                "queue": [self.jobs[j].public() for j in self.queue],
                "jobs": [j.public() for j in sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)][:50],
            }

    # ------------------------------------------------------------------ the worker
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self.queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self.jobs[self.queue.popleft()]
                self.current = job
                job.status, job.started = "running", time.time()
            self._record(job)
            try:
                if job.kind == "fit":
                    self._run_fit(job)
                else:
                    self._run_evaluate(job)
            except Exception as exc:  # noqa: BLE001 - a job's failure never stops the worker
                log.exception("job %s failed", job.id)
                job.status, job.message = (
                    "failed",
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                )
            finally:
                job.finished = time.time()
                self._record(job)
                with self._cond:
                    self.current = None
                    self._proc = None

    def _run_fit(self, job: Job) -> None:
        cmd = fit_command(self.python, self.runs_dir, job.spec, resume=bool(job.spec.get("resume")))
        self._run_subprocess(job, cmd, "genlab fit")

    def _run_evaluate(self, job: Job) -> None:
        cmd = [
            self.python,
            "-m",
            "genlab.ui.evaluate_job",
            str(self.runs_dir / job.run),
            str(int(job.spec["n"])),
            str(int(job.spec["seed"])),
        ]
        self._run_subprocess(job, cmd, "the evaluation")

    def _run_subprocess(self, job: Job, cmd: list[str], what: str) -> None:
        """Run ``cmd`` (its output into ``RUNS_DIR/.jobs/<id>.log``) and set the job's status
        from its exit: done, cancelled (SIGINT asked for) or failed (its last line as the message)."""
        logs = self.runs_dir / JOBS_DIR
        logs.mkdir(exist_ok=True)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # the genlab this server runs, first on the path
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        log_path = logs / f"{job.id}.log"
        if cmd[1:2] == ["-m"]:  # cancelling sends SIGINT: make sure the child acts on it
            cmd = [cmd[0], "-m", "genlab.ui.interruptible", *cmd[2:]]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            with self._cond:
                self._proc = proc
            if job.cancel_requested:
                proc.send_signal(signal.SIGINT)
            rc = proc.wait()
        job.returncode = rc
        tail = _last_line(log_path)
        if rc == 0:
            job.status, job.message = "done", tail or "finished"
        elif job.cancel_requested:
            job.status = "cancelled"
            job.message = (
                "cancelled; the last checkpoint is kept (resume continues from it)"
                if job.kind == "fit"
                else "cancelled"
            )
        else:
            job.status, job.message = "failed", tail or f"{what} exited with {rc}"

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _last_line(path: Path) -> str:
    """The last non-empty line of a job's log (its error message when it failed)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
