"""``gopose annotate --ray``: the single-process annotation, spread over Ray workers (archives that outgrow a machine).

The driver (the ``gopose annotate`` process) expands the inputs, names every output and recovers leftovers exactly as
the single-process run does (``app/commands/annotate.py``), then hands whole inputs to worker actors. A worker loads
the model once and runs the single-process run's per-input function (``annotate_one``) with the same engine, sinks
and outputs, so it writes the same files into the output folder (shared storage on a cluster), atomically and
journalled in the manifest as always. A worker that dies (killed process, lost node) is restarted by Ray and its
input retried (``max_restarts``, ``max_task_retries``); an input that fails for its own reasons (a corrupt file) is
reported once. The driver shows one progress display and prints the same per-input lines, JSON summary and exit code
as the single-process run. Ray is imported lazily (``require_ray``): only ``--ray`` needs ``gopose[ray]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TextIO

from app.signals import Terminated
from core.errors import InputError

LOG = logging.getLogger(__name__)

LOCAL = "local"                # --ray alone: start a Ray on this machine for this run
TASK_RETRIES = 2               # an input whose worker dies is tried at most 1 + TASK_RETRIES times
REPORT_INTERVAL = 0.5          # seconds between a worker's progress reports and the driver's display updates
DEFAULT_CPU_THREADS = 1        # torch threads of a CPU worker without --threads (one worker per CPU)
CONNECT_TIMEOUT = 10.0         # seconds a cluster's address has to answer (Ray itself retries one for ~14 minutes)
# the options of a run that annotate_one reads (the parsed arguments also hold unpicklable entries)
WORKER_OPTIONS = ("formats", "no_track", "smooth", "skip_existing", "batch_size", "progress_interval")
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):\d{1,5}")


def require_ray():
    """The ``ray`` module, or ``InputError`` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed: pip install 'gopose[ray]'") from None
    return ray


def parse_address(text: str) -> str:
    """``local`` (a Ray started for this run), ``auto`` (the cluster this machine belongs to), ``ray://HOST:PORT``
    (Ray Client) or ``HOST:PORT`` (a head node's address); anything else is ``InputError``."""
    if text in (LOCAL, "auto"):
        return text
    if text.startswith("ray://") and _HOST_PORT.fullmatch(text[len("ray://"):]):
        return text
    if _HOST_PORT.fullmatch(text):
        return text
    raise InputError(f"expected local, auto, ray://HOST:PORT or HOST:PORT, got {text!r} (to start a local Ray, "
                     f"put --ray after the inputs or write --ray=local)")


# ------------------------------------------------------------------------------------------------ workers
@dataclass(frozen=True)
class WorkerPlan:
    """How many workers, on which device, each asking Ray for ``num_cpus`` CPUs and ``num_gpus`` GPUs."""

    count: int
    device: str  # "cpu" or "cuda" (the GPU Ray assigns)
    num_cpus: int
    num_gpus: int
    threads: int  # torch threads of each worker

    def describe(self) -> str:
        if self.num_gpus:
            return f"{self.count} GPU worker(s) ({self.num_gpus} GPU, {self.num_cpus} CPU each)"
        return f"{self.count} CPU worker(s) ({self.threads} thread(s) each)"


def plan_workers(nodes: list[dict[str, float]], device: str, workers: int | None = None,
                 threads: int | None = None) -> WorkerPlan:
    """The workers for a cluster whose alive nodes have the resources ``nodes`` (Ray's ``{"CPU": .., "GPU": ..}``):
    GPU workers (one GPU each, one per GPU by default) when ``device`` asks for CUDA, or is ``auto`` and the cluster
    has GPUs; else CPU workers of ``threads`` threads (default 1), as many as the CPUs hold by default. A plan the
    nodes cannot hold is ``InputError`` (its workers would wait forever)."""
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    use_gpu = str(device).startswith("cuda") or (device == "auto" and gpus > 0)
    if use_gpu:
        if gpus == 0:
            raise InputError(f"--device {device}: the Ray cluster has no GPUs (use --device cpu or auto)")
        plan = WorkerPlan(workers or gpus, "cuda", threads or 1, 1, threads or 1)
    else:
        t = threads or DEFAULT_CPU_THREADS
        plan = WorkerPlan(workers or sum(int(n.get("CPU", 0)) // t for n in nodes), "cpu", t, 0, t)
    room = sum(_fits(n, plan) for n in nodes)
    if plan.count < 1 or plan.count > room:
        need = f"{plan.num_cpus} CPU" + (f" and {plan.num_gpus} GPU" if plan.num_gpus else "")
        raise InputError(f"the Ray cluster holds {room} worker(s) of {need} each ({len(nodes)} node(s), "
                         f"{_total(nodes, 'CPU')} CPUs, {gpus} GPUs); asked for {max(plan.count, 1)} "
                         f"(see --ray-workers and --threads)")
    return plan


def _fits(node: dict[str, float], plan: WorkerPlan) -> int:
    """How many workers of ``plan`` one node holds."""
    n = int(node.get("CPU", 0)) // plan.num_cpus
    if plan.num_gpus:
        n = min(n, int(node.get("GPU", 0)) // plan.num_gpus)
    return n


def _total(nodes: list[dict[str, float]], key: str) -> int:
    return sum(int(n.get(key, 0)) for n in nodes)


@dataclass
class JobSpec:
    """What every worker needs: the model, the engine configuration, the run's options, the whole input list (no
    output may replace any input), all paths as the user gave them, and the driver's working folder ``cwd`` they
    are relative to; ``board`` is the name of the run's :class:`ProgressBoard` actor."""

    model: str
    model_name: str
    arch: str | None
    spec: str | None
    config: Any  # app.engine.EngineConfig
    threads: int
    inputs: list[str]
    out_dir: str
    options: argparse.Namespace
    cwd: str
    board: str

    def relative_paths(self) -> list[str]:
        """The paths that mean something only in ``cwd``."""
        from app.sources import is_url

        paths = [self.model, self.out_dir, *(i for i in self.inputs if not is_url(i))]
        return [p for p in paths if not Path(p).is_absolute()]


class VideoWorker:
    """A Ray actor: loads the model once, then annotates whole inputs with the single-process run's function.

    It works in the driver's working folder (this process is the worker's own), so paths mean, and outputs record,
    what they do in the single-process run. A constructor that fails keeps its one-line reason for ``info`` (a
    failing actor constructor floods the driver with tracebacks and is given up by Ray without a word)."""

    def __init__(self, job: JobSpec) -> None:
        self.job, self._board = job, None
        self.estimator, self.error = None, None
        try:
            _enter(job)
            import torch

            from app.engine import load_estimator

            torch.set_num_threads(job.threads)  # this process is the worker: its thread count is ours to set
            self.estimator = load_estimator(job.model, job.config, arch=job.arch, spec=job.spec)
            self.estimator.name = job.model_name
        except InputError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported by the driver in one line
            LOG.debug("worker could not load %s", job.model, exc_info=True)
            self.error = f"{type(exc).__name__}: {exc}"

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it runs, or why it cannot (``error``)."""
        est = self.estimator
        return {"pid": os.getpid(), "node": _node_ip(), "error": self.error,
                "device": str(est.device) if est else None, "backend": est.backend if est else None}

    def annotate(self, index: int, item: str, stem: str):
        """``(ExportResult, None)`` or ``(None, one-line error)`` for the input ``index`` of the plan."""
        from app.commands.annotate import annotate_one

        if self.estimator is None:
            return None, f"the worker could not load the model: {self.error}"
        board = self.board
        board.started.remote(index, os.getpid(), _node_ip())
        reporter = _Reporter(board, index)
        try:
            return annotate_one(item, stem, self.job.inputs, Path(self.job.out_dir), self.estimator,
                                self.job.options, report=reporter)
        finally:
            reporter.flush()

    @property
    def board(self):
        if self._board is None:
            import ray

            self._board = ray.get_actor(self.job.board)
        return self._board


def _enter(job: JobSpec) -> None:
    """Work in the driver's folder; without it on this node, only absolute paths (on shared storage) can work."""
    try:
        os.chdir(job.cwd)
    except OSError:
        relative = job.relative_paths()
        if relative:
            raise InputError(f"the driver's working folder {job.cwd} is not on node {_node_ip()}, so {relative[0]} "
                             f"means nothing there: give the inputs, --out and --model as absolute paths on "
                             f"storage every node shares") from None


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


class _Reporter:
    """A worker's ``report(done, total)``: tells the board the frames done at most every ``REPORT_INTERVAL``."""

    def __init__(self, board, index: int) -> None:
        self.board, self.index = board, index
        self.done, self.sent, self.last = 0, 0, time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if time.monotonic() - self.last >= REPORT_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if self.done != self.sent:
            self.board.progress.remote(self.index, self.done)  # fire and forget
            self.sent, self.last = self.done, time.monotonic()


class ProgressBoard:
    """A small Ray actor the workers tell what they do and the driver reads: frames done per input, and every
    start of an input (a second start of the same input is a retry after its worker died)."""

    def __init__(self) -> None:
        self.frames: dict[int, int] = {}
        self.attempts: dict[int, int] = {}
        self.events: list[tuple[int, int, int, str]] = []

    def started(self, index: int, pid: int, node: str) -> None:
        self.attempts[index] = self.attempts.get(index, 0) + 1
        self.frames[index] = 0
        self.events.append((index, self.attempts[index], pid, node))

    def progress(self, index: int, done: int) -> None:
        self.frames[index] = done

    def read(self) -> tuple[dict[int, int], list[tuple[int, int, int, str]]]:
        """``(frames done per input, starts since the last read as (index, attempt, pid, node))``."""
        events, self.events = self.events, []
        return dict(self.frames), events


# ------------------------------------------------------------------------------------------------ driver
class JobProgress:
    """The driver's one progress display: inputs done of all, frames, frames/s summed over the workers, failures.
    A live bar on a terminal, else one line every ``interval`` seconds; nothing when ``quiet``."""

    def __init__(self, total: int, quiet: bool = False, interval: float = 30.0, stream: TextIO | None = None) -> None:
        self.total, self.quiet, self.interval = total, quiet, float(interval)
        self.stream = sys.stderr if stream is None else stream
        self.done = self.failed = self.frames = 0
        self.start: float | None = None
        self.last = time.monotonic()
        self._bar = None
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="gopose annotate", unit="input", file=self.stream,
                             dynamic_ncols=True, leave=False)

    def begin(self) -> None:
        """The first worker is ready: frames/s counts from now (not over the workers' start)."""
        if self.start is None:
            self.start = time.monotonic()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.start if self.start is not None else 0.0
        return self.frames / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        return (f"{self.done}/{self.total} inputs, {self.frames} frames, {self.rate:.1f} frames/s, "
                f"{self.failed} failed")

    def update(self, frames: int | None = None, finished: bool = False, failed: bool = False) -> None:
        if frames is not None:
            self.frames = max(self.frames, frames)
        self.done += finished
        self.failed += failed
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.frames} frames, {self.rate:.1f} frames/s, {self.failed} failed",
                                      refresh=False)
            self._bar.update(int(finished))
            self._bar.refresh()
        elif not self.quiet and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            self.stream.write(f"gopose annotate: {self.text()}\n")
            self.stream.flush()

    @contextmanager
    def printing(self) -> Iterator[None]:
        """Write other lines without tearing the bar."""
        if self._bar is None:
            yield
            return
        with self._bar.external_write_mode(file=self.stream):
            yield

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def connected(ray, address: str, worker_logs: bool = False) -> Iterator[str]:
    """Ray connected for the block (and shut down after it); a Ray this process has already started is used as is.
    ``worker_logs``: show the workers' and Ray's own log lines here (else they stay in Ray's log files: the
    driver reports each failure and retry in one line). Yields a description of the cluster for the user."""
    if ray.is_initialized():
        yield "Ray (already connected)"
        return
    common = {"logging_level": logging.WARNING, "log_to_driver": worker_logs}
    try:
        with _own_signal_handlers():
            if address == LOCAL:
                ray.init(address="local", include_dashboard=False, **common)
            else:
                check_reachable(address)
                ray.init(address=address, **common)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM through Ray's own handler: sys.exit(15)
        ray.shutdown()  # what of a local Ray had started
        if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM:
            raise Terminated() from None
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise InputError(f"--ray {address}: cannot start or join Ray: {_first_line(exc)}") from None
    try:
        yield "a local Ray" if address == LOCAL else f"the Ray cluster at {address}"
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """``ConnectionError`` unless something accepts connections at a ``HOST:PORT`` or ``ray://HOST:PORT`` address
    (for ``auto``: ``$RAY_ADDRESS`` when it is one) within ``timeout`` seconds: given one where nothing listens,
    ``ray.init`` retries for about 14 minutes, printing its own log lines, before it gives up."""
    if address == "auto":  # Ray joins $RAY_ADDRESS when set (else the cluster started on this machine)
        address = os.environ.get("RAY_ADDRESS", "").strip()
        if not _HOST_PORT.fullmatch(address.removeprefix("ray://")):
            return
    if address == LOCAL:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from None


@contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keep this process's SIGTERM and SIGINT handling (Ctrl-C and SIGTERM stop the run the way they stop a
    single-process run) across ``ray.init``, which installs handlers of its own (SIGTERM would abort the driver)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextmanager
def _sigterm_stays_terminated() -> Iterator[None]:
    """Ray turns an exception that a signal handler raises during its calls into a plain ``KeyboardInterrupt``:
    remember a SIGTERM, so that the run still ends as terminated (exit 143), not as interrupted (130)."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        received.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except KeyboardInterrupt as exc:
        if received and not isinstance(exc, Terminated):
            raise Terminated() from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


class RayAnnotation:
    """One ``--ray`` run: start the workers, give each ready worker the next input, collect the outcomes in plan
    order, replace a worker Ray gave up on, and stop everything at the end (also on Ctrl-C / SIGTERM)."""

    def __init__(self, ray, plan: list[tuple[str, str]], job: JobSpec, workers: WorkerPlan,
                 progress: JobProgress) -> None:
        self.ray, self.plan, self.job, self.workers, self.progress = ray, plan, job, workers, progress
        self.board = ray.remote(ProgressBoard).options(num_cpus=0, max_restarts=-1, name=job.board).remote()
        self._cls = ray.remote(VideoWorker).options(num_cpus=workers.num_cpus, num_gpus=workers.num_gpus,
                                                    max_restarts=-1, max_task_retries=TASK_RETRIES)
        self.actors: list = []
        self.infos: list[dict[str, Any]] = []
        self.seen: set[tuple[str, int]] = set()  # (node, pid) of every worker process, for stop()
        self.outcomes: list[tuple[str, Any, str | None] | None] = [None] * len(plan)
        self.frames: dict[int, int] = {}  # frames done per input: the board's reports, then each outcome's count

    def run(self) -> list[tuple[str, Any, str | None]]:
        ray = self.ray
        starting = dict(self._start() for _ in range(self.workers.count))  # info ref -> actor
        idle: list = []
        running: dict = {}
        queue = deque(range(len(self.plan)))
        errors: list[str] = []
        next_read = 0.0
        while queue or running:
            while idle and queue:
                index = queue.popleft()
                actor = idle.pop()
                running[actor.annotate.remote(index, *self.plan[index])] = (index, actor)
            if not running and not starting:
                raise InputError(f"no Ray worker could start: {errors[-1] if errors else 'unknown reason'}")
            ready, _ = ray.wait([*starting, *running], num_returns=1, timeout=REPORT_INTERVAL)
            for ref in ready:
                if ref in starting:
                    self._started(ref, starting.pop(ref), idle, errors)
                else:
                    index, actor = running.pop(ref)
                    if self._finished(ref, index):
                        idle.append(actor)
                    else:  # Ray gave this worker up: a fresh one takes its place
                        self._kill(actor)
                        info_ref, fresh = self._start()
                        starting[info_ref] = fresh
            if time.monotonic() >= next_read:
                next_read = time.monotonic() + REPORT_INTERVAL
                self._read_board()
        self._read_board()
        return [o for o in self.outcomes if o is not None]

    def _start(self) -> tuple[Any, Any]:
        """A new worker: ``(ref of its info, actor)``."""
        actor = self._cls.remote(self.job)
        self.actors.append(actor)
        return actor.info.remote(), actor

    def _started(self, ref, actor, idle: list, errors: list[str]) -> None:
        """A worker answered (or failed) its first call: ready for inputs, or reported (each reason once)."""
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            info = {"error": _first_line(exc)}
        if info.get("error"):
            if info["error"] not in errors:
                with self.progress.printing():
                    print(f"gopose annotate: a Ray worker could not start: {info['error']}", file=sys.stderr)
            errors.append(info["error"])
            self._kill(actor)
            return
        self.infos.append(info)
        self.seen.add((info["node"], info["pid"]))
        self.progress.begin()
        idle.append(actor)

    def _finished(self, ref, index: int) -> bool:
        """File the outcome of input ``index``; False when its worker died once more than Ray retries."""
        from app.commands.annotate import report_outcome

        item, _ = self.plan[index]
        alive = True
        try:
            res, error = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            res, error, alive = None, (f"its Ray worker died {1 + TASK_RETRIES} times while annotating it "
                                       f"(last: {_first_line(exc)})"), False
        except self.ray.exceptions.RayError as exc:
            res, error = None, f"failed on its Ray worker: {_first_line(exc)}"
        self.outcomes[index] = (item, res, error)
        if res is not None:  # the worker's last report may reach the board after its result reached us
            self.frames[index] = 0 if res.skipped else res.frames
        with self.progress.printing():
            report_outcome(item, res, error)
        self.progress.update(sum(self.frames.values()), finished=True, failed=error is not None)
        return alive

    def _read_board(self) -> None:
        try:
            reported, events = self.ray.get(self.board.read.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - the display must never stop the run
            LOG.debug("progress board unavailable", exc_info=True)
            return
        for index, attempt, pid, node in events:
            self.seen.add((node, pid))
            if attempt > 1:
                with self.progress.printing():
                    print(f"gopose annotate: {self.plan[index][0]}: its Ray worker died; Ray retries it "
                          f"(attempt {attempt} of {1 + TASK_RETRIES}, pid {pid} on {node})", file=sys.stderr)
        finished = {i for i, outcome in enumerate(self.outcomes) if outcome is not None and outcome[1] is not None}
        self.frames.update({i: n for i, n in reported.items() if i not in finished})
        self.progress.update(sum(self.frames.values()))

    def _kill(self, actor) -> None:
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - already gone
            LOG.debug("killing a worker failed", exc_info=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Kill every worker and the board, then wait (up to ``timeout``) until this machine's worker processes
        are gone, so the recovery that follows removes their temporary files."""
        for actor in [*self.actors, self.board]:
            self._kill(actor)
        here = _driver_ip(self.ray)
        pids = [pid for node, pid in self.seen if node == here]
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def summary_facts(self) -> tuple[str, str]:
        """``(device, backend)`` of the workers (comma-separated when they differ)."""
        return (",".join(sorted({str(i["device"]) for i in self.infos})) or "none",
                ",".join(sorted({str(i["backend"]) for i in self.infos})) or "none")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _driver_ip(ray) -> str | None:
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - Ray Client: the driver is no node
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def annotate_on_ray(plan: list[tuple[str, str]], inputs: list[str], out_dir: Path, choice, config,
                    args: argparse.Namespace) -> int:
    """Annotate ``plan`` (``(input, stem)`` pairs named by the single-process run) on Ray workers; print the same
    lines, summary and exit code. ``inputs`` is the whole expanded input list, ``choice`` the model
    (``app.model_store.ModelChoice``), ``config`` the engine configuration."""
    from app.commands.annotate import exit_code, recover_outputs, summarize

    ray = require_ray()
    options = argparse.Namespace(**{k: getattr(args, k) for k in WORKER_OPTIONS}, quiet=True)
    with connected(ray, args.ray, worker_logs=getattr(args, "verbose", 0) > 0) as where:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        workers = plan_workers(nodes, config.device, args.ray_workers, args.threads)
        workers = dataclasses.replace(workers, count=min(workers.count, len(plan)))  # no idle model loads
        print(f"gopose annotate: {where}: {len(nodes)} node(s), {workers.describe()}", file=sys.stderr)
        job = JobSpec(model=str(choice.path), model_name=choice.name, arch=args.arch or choice.arch, spec=args.spec,
                      config=dataclasses.replace(config, device=workers.device, threads=workers.threads),
                      threads=workers.threads, inputs=list(inputs), out_dir=str(out_dir), options=options,
                      cwd=os.getcwd(), board=f"gopose-annotate-progress-{uuid.uuid4().hex}")
        progress = JobProgress(len(plan), quiet=args.quiet, interval=args.progress_interval)
        run = RayAnnotation(ray, plan, job, workers, progress)
        t0 = time.monotonic()
        with _sigterm_stays_terminated():
            try:
                outcomes = run.run()
            finally:
                progress.close()
                run.stop()
                recover_outputs(out_dir, plan)  # the temporary files of workers that died or were stopped
        seconds = time.monotonic() - t0
    device, backend = run.summary_facts()
    summary = summarize(outcomes, seconds, out_dir, choice.name, device, backend)
    print(json.dumps(summary))
    return exit_code(summary, args.allow_partial)


__all__ = ["JobProgress", "JobSpec", "ProgressBoard", "RayAnnotation", "VideoWorker", "WorkerPlan", "annotate_on_ray",
           "check_reachable", "connected", "parse_address", "plan_workers", "require_ray"]
