"""Start N training processes through torch's elastic launcher, and the few collectives they share.

    # the parent (`ptk pretrain --gpus 2`): validate, then re-launch as workers and wait
    if not in_worker():
        launch(Launch(nproc_per_node=2), cfg.to_dict(), cfg.out)
    # each worker (`python -m pretrain_cli.training.worker CONFIG_JSON`): join the group
    dist = init_process_group("cuda")
    tokens = all_reduce_sum(torch.tensor([local_tokens]))
    destroy_process_group()

The parent never joins a process group; it runs torchrun as a child process that shares its stdout,
stderr and process group, so the workers draw progress bars on the user's terminal and a Ctrl-C
reaches all of them at once. One node uses `--standalone` (torch picks a free port, so parallel runs
never collide); several nodes use the static rendezvous at `--rdzv-endpoint`, whose `--node-rank`
fixes each node's ranks, so rank 0 (the one that writes checkpoints) is always on node 0.

Failures: a worker that hits a `UserError` appends its one-line message to $PTK_ERROR_FILE and
exits with code 2; the parent raises that message as its own `UserError`, so the user's last line is
the usual `error: ...`. Torchrun itself runs through this module (`python -m
pretrain_cli.training.distributed TORCHRUN_ARGS`), which drops torchrun's failure report when a
worker has already explained itself that way, and otherwise prints it (which rank failed, how, on
which host) and records the first failure in $PTK_FAILURE_FILE for the parent's message.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pretrain_cli.errors import UserError

T = TypeVar("T")
WORKER_MODULE = "pretrain_cli.training.worker"
LAUNCHER_MODULE = "pretrain_cli.training.distributed"  # torchrun, entered here: see _torchrun
ERROR_FILE_ENV = "PTK_ERROR_FILE"  # workers append UserError messages here, one per line
FAILURE_FILE_ENV = "PTK_FAILURE_FILE"  # the launcher writes the first failure's {"rank", "exitcode"} here
# Torchrun gives its workers 30 s to stop before it kills them; after a Ctrl-C the parent waits a
# little longer than that before it steps in itself.
STOP_GRACE_S = 40
# Long enough for rank 0 to write a large checkpoint while the others wait in a collective.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class Launch:
    """How many processes to start, where, and how they meet."""

    nproc_per_node: int  # processes on this machine: one per GPU, or --procs on CPU
    nnodes: int = 1  # machines taking part
    node_rank: int = 0  # this machine's index, 0 to nnodes - 1; node 0 hosts the rendezvous
    rdzv_endpoint: str = ""  # host:port of node 0 for multi-node; "" = single node (--standalone)

    def problems(self) -> list[str]:
        """Every problem with these settings, named by their `ptk pretrain` options."""
        found = []
        if self.nproc_per_node < 1:
            found.append("--gpus / --procs must be at least 1")
        if self.nnodes < 1:
            found.append("--nnodes must be at least 1")
        elif not 0 <= self.node_rank < self.nnodes:
            found.append(f"--node-rank {self.node_rank} must be from 0 to {self.nnodes - 1} (--nnodes - 1)")
        if self.nnodes > 1:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                found.append(f"--rdzv-endpoint {self.rdzv_endpoint!r}: give node 0's host:port (for example "
                             f"node0:29500), the same on every node, when --nnodes is above 1")
        return found


def in_worker() -> bool:
    """True inside a process torchrun started (ours or the user's own): it must train, not re-launch."""
    return "TORCHELASTIC_RUN_ID" in os.environ and all(
        name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def torchrun_argv(launch: Launch, config_json: Path, *, module: str = WORKER_MODULE) -> list[str]:
    """The command that runs `python -m MODULE CONFIG_JSON` on every process of this node: torchrun's
    own options, entered through this module's quieter failure report (see the module doc)."""
    if problems := launch.problems():
        raise UserError("ptk pretrain: " + "; ".join(problems))
    if launch.nnodes == 1:
        meet = ["--standalone"]
    else:  # static: --node-rank decides the ranks (c10d would ignore it and deal them out by arrival)
        meet = ["--rdzv-backend", "static", "--rdzv-endpoint", launch.rdzv_endpoint,
                "--node-rank", str(launch.node_rank)]
    return [sys.executable, "-m", LAUNCHER_MODULE, "--nproc-per-node", str(launch.nproc_per_node),
            "--nnodes", str(launch.nnodes), *meet, "--max-restarts", "0",
            "-m", module, str(config_json)]


def launch(launch: Launch, config: dict[str, Any], *, module: str = WORKER_MODULE) -> None:
    """Run `module` on `launch.nproc_per_node` processes with `config` (a `StageConfig.to_dict()`)
    and wait for them; raise the workers' `UserError`, or RuntimeError when they crashed.

    The launch's files live in a private temporary directory of this node (never in the output
    directory, which other nodes may be checking) and are removed whatever happens.
    """
    launch_dir = Path(tempfile.mkdtemp(prefix="ptk-launch-"))
    config_json, errors, failure = (launch_dir / "config.json", launch_dir / "errors.txt",
                                    launch_dir / "failure.json")
    argv = torchrun_argv(launch, config_json, module=module)
    env = {**os.environ, ERROR_FILE_ENV: str(errors), FAILURE_FILE_ENV: str(failure)}
    # torchrun would pin every worker to 1 thread; share this machine's cores among them instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // launch.nproc_per_node)))
    launch_dir.mkdir(parents=True, exist_ok=True)
    try:
        config_json.write_text(json.dumps(config, indent=1))
        returncode, forwarded = _supervise(subprocess.Popen(argv, env=env))
        problem = None if returncode == 0 else _failure(returncode, errors, failure)
    finally:
        shutil.rmtree(launch_dir, ignore_errors=True)
    if forwarded is not None:  # a SIGTERM stopped the run: end this process by it too, now all is clean
        signal.signal(forwarded, signal.SIG_DFL)
        signal.raise_signal(forwarded)
    if problem is not None:
        raise problem


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _supervise(proc: subprocess.Popen) -> tuple[int, int | None]:
    """Wait for torchrun; return its exit code and the SIGTERM this process passed on to it, if any.

    A SIGTERM may come to this process alone (`timeout`, a scheduler), so it is passed on: torchrun
    then stops its workers. A Ctrl-C reaches torchrun and the workers directly (same process group).
    """
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        proc.send_signal(signum)

    handles = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, forward) if handles else None
    try:
        return proc.wait(), (forwarded[0] if forwarded else None)
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        if handles:  # None: a handler set outside Python, which cannot be put back; use the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _stop(proc: subprocess.Popen) -> None:
    """After a Ctrl-C: torchrun got it too and is stopping its workers, so give it the time that takes;
    then ask it to stop (the SIGINT came to this process alone), then kill it. A second Ctrl-C skips
    the wait."""
    for escalate in (None, proc.terminate, proc.kill):
        if escalate is not None:
            escalate()
        try:
            proc.wait(STOP_GRACE_S if escalate is not proc.kill else None)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue


def _failure(returncode: int, errors: Path, failure: Path) -> Exception:
    """What to raise for a launch that ended with `returncode`."""
    if reported := _first_line(errors):
        return UserError(reported)
    if failure.is_file():
        record = json.loads(failure.read_text())
        return RuntimeError(f"the worker of rank {record['rank']} failed ({_status(record['exitcode'])}) and "
                            f"the launcher stopped the others; see their output above")
    if returncode > 128:  # _torchrun's code for "stopped by signal N" (not one from this process)
        returncode = 128 - returncode
    return RuntimeError(f"the launcher (torchrun) ended with {_status(returncode)} before any worker "
                        f"failed; see its output above")


def _status(code: int) -> str:
    """A process's exit code in words (negative: the signal that killed it, as subprocess has it)."""
    if code < 0 and -code in signal.valid_signals():
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _first_line(path: Path) -> str:
    """The first message in an error file ("" when there is none); every rank may write the same one."""
    try:
        return next((line for line in path.read_text().splitlines() if line.strip()), "")
    except FileNotFoundError:
        return ""


def _torchrun(argv: list[str]) -> int:
    """torchrun with `argv`, minus its failure report when a worker already reported a UserError."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    errors = Path(os.environ.get(ERROR_FILE_ENV, os.devnull))
    # its "failed (exitcode: 2) local_rank: 0 ..." line would come between the worker and its error
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(
        lambda _record: not _first_line(errors))
    try:
        main(argv)
    except ChildFailedError as exc:
        rank, first = exc.get_first_failure()  # the others may only have been stopped because of it
        if path := os.environ.get(FAILURE_FILE_ENV):
            Path(path).write_text(json.dumps({"rank": rank, "exitcode": first.exitcode}))
        if not _first_line(errors):
            print(exc.format_msg(), file=sys.stderr)  # which ranks failed, how and where
        return 1
    except SignalException as exc:  # Ctrl-C or SIGTERM: the workers are stopped; nothing to report
        return 128 + int(exc.sigval)
    return 0


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the job (world_size 1, rank 0 when not launched)."""

    rank: int  # 0 to world_size - 1 over all nodes
    world_size: int  # processes in the job
    local_rank: int  # index on this node: the GPU this process drives

    @property
    def is_main(self) -> bool:
        """The one process that logs, writes checkpoints and the manifest."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_process_group(device_type: str) -> Dist:
    """Join the job's process group in a worker (a no-op elsewhere) and say where this process sits.

    CUDA gets NCCL for its tensors and gloo for CPU ones (so counters on the CPU reduce too), and
    each process drives the GPU of its local rank; CPU runs use gloo.
    """
    if not in_worker():
        return Dist(rank=0, world_size=1, local_rank=0)
    here = Dist(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                local_rank=int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(here.local_rank)
            dist.init_process_group("cpu:gloo,cuda:nccl", timeout=COLLECTIVE_TIMEOUT,
                                    device_id=torch.device("cuda", here.local_rank))
        else:
            dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return here


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes, in place; return it."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank `src`'s `value` (any picklable object), on every process."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(value: T) -> list[T]:
    """Every process's `value`, in rank order, on every process."""
    if not _active():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def side_group() -> Any:
    """A second group over every process (None when alone), for collectives that run inside
    autograd (SimCSE's gathered negatives), so they never interleave with DDP's own all-reduces."""
    return dist.new_group() if _active() else None


def barrier() -> None:
    if _active():
        dist.barrier()


def worker_error(message: str) -> None:
    """Leave `message` (a UserError's) for the parent to report, when a `launch` started this worker."""
    if path := os.environ.get(ERROR_FILE_ENV):
        # one short append per rank: O_APPEND keeps concurrent lines whole
        with open(path, "a") as file:
            file.write(" ".join(message.splitlines()) + "\n")


def visible_gpus() -> int:
    """CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))
