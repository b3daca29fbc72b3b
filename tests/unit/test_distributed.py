"""The launcher and the process-group helpers: torchrun's command line, real 2-process gloo launches
(collectives, a worker's UserError, a crash, two nodes on one machine) and stopping by signal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import pretrain_cli
from pretrain_cli.errors import UserError
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.training import worker
from pretrain_cli.training.distributed import (
    ERROR_FILE_ENV,
    WORKER_MODULE,
    Dist,
    Launch,
    all_reduce_sum,
    barrier,
    broadcast_object,
    destroy_process_group,
    gather_objects,
    in_worker,
    init_process_group,
    launch,
    torchrun_argv,
    usable_cpus,
    worker_error,
)

TORCHRUN_ENV = ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK")

# A worker module for the tests: `python -m ptk_probe CONFIG_JSON` with {"out": dir, "mode": ...}.
PROBE = '''
import json, os, sys, time
from pathlib import Path

import torch

from pretrain_cli.training import distributed as d

cfg = json.loads(Path(sys.argv[1]).read_text())
out = Path(cfg["out"])
out.mkdir(parents=True, exist_ok=True)
here = d.init_process_group("cpu")
(out / f"pid{here.rank}").write_text(str(os.getpid()))
if cfg["mode"] == "sleep":
    time.sleep(600)
if cfg["mode"] == "crash":
    if here.rank == 1:
        raise RuntimeError("rank one broke")
    d.barrier()  # rank 0 waits here until the launcher stops it
total = d.all_reduce_sum(torch.tensor([here.rank + 1.0, 10.0]))
record = {"dist": [here.rank, here.world_size, here.local_rank, here.is_main, here.enabled],
          "sum": total.tolist(), "from0": d.broadcast_object({"sent by": here.rank}),
          "from1": d.broadcast_object(f"rank {here.rank}", src=1), "all": d.gather_objects(here.rank * 7),
          "omp": os.environ.get("OMP_NUM_THREADS"), "in_worker": d.in_worker()}
d.barrier()
(out / f"rank{here.rank}.json").write_text(json.dumps(record))
d.destroy_process_group()
'''


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The probe module, importable by launched workers (PYTHONPATH is inherited through torchrun)."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "ptk_probe.py").write_text(PROBE)
    repo = Path(pretrain_cli.__file__).parents[1]
    paths = [str(code_dir), str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return "ptk_probe"


@pytest.fixture(autouse=True)
def outside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as a plain process even when the suite itself was started by torchrun."""
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def torchrun_options(argv: list[str]) -> argparse.Namespace:
    """`argv` as torchrun's own parser reads it (after `python -m <launcher module>`)."""
    from torch.distributed.run import get_args_parser

    return get_args_parser().parse_args(argv[3:])


def test_single_node_argv_is_standalone_torchrun(tmp_path: Path) -> None:
    argv = torchrun_argv(Launch(nproc_per_node=3), tmp_path / "config.json")
    assert argv[:2] == [sys.executable, "-m"]
    options = torchrun_options(argv)
    assert options.standalone
    assert (options.nproc_per_node, options.nnodes, options.max_restarts) == ("3", "1", 0)  # fail fast
    assert options.module and options.training_script == WORKER_MODULE
    assert options.training_script_args == [str(tmp_path / "config.json")]


def test_multi_node_argv_fixes_node_ranks(tmp_path: Path) -> None:
    argv = torchrun_argv(Launch(nproc_per_node=8, nnodes=4, node_rank=3, rdzv_endpoint="node0:29500"),
                         tmp_path / "c.json", module="my.module")
    options = torchrun_options(argv)
    assert not options.standalone
    assert (options.rdzv_backend, options.rdzv_endpoint, options.node_rank) == ("static", "node0:29500", 3)
    assert (options.nproc_per_node, options.nnodes, options.max_restarts) == ("8", "4", 0)
    assert options.training_script == "my.module"


def test_bad_launch_settings_are_all_reported_by_option() -> None:
    with pytest.raises(UserError) as caught:
        torchrun_argv(Launch(nproc_per_node=0, nnodes=2, node_rank=2), Path("c.json"))
    message = str(caught.value)
    assert "--gpus / --procs must be at least 1" in message
    assert "--node-rank 2 must be from 0 to 1" in message
    assert "--rdzv-endpoint ''" in message
    assert Launch(2, nnodes=2, rdzv_endpoint="node0:0").problems()  # node 0's port must be known
    assert Launch(2, nnodes=2, rdzv_endpoint="[::1]:29500", node_rank=1).problems() == []


def test_in_worker_needs_all_of_torchruns_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_worker()
    for name, value in zip(TORCHRUN_ENV, ("run", "1", "2", "1"), strict=True):
        monkeypatch.setenv(name, value)
    assert in_worker()
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")  # stray RANK/WORLD_SIZE alone do not make a worker
    assert not in_worker()


def test_one_process_needs_no_group() -> None:
    here = init_process_group("cpu")
    assert here == Dist(rank=0, world_size=1, local_rank=0)
    assert here.is_main and not here.enabled
    assert not dist.is_initialized()
    values = torch.tensor([1.5, -2.0])
    assert all_reduce_sum(values) is values and values.tolist() == [1.5, -2.0]
    assert broadcast_object({"a": 1}, src=0) == {"a": 1}
    assert gather_objects("x") == ["x"]
    barrier()
    destroy_process_group()


def test_worker_error_appends_one_line_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker_error("ignored: no launch asked for it")
    path = tmp_path / "errors.txt"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))
    worker_error("first\nproblem")
    worker_error("second")
    assert path.read_text().splitlines() == ["first problem", "second"]


def missing_examples_config(tmp_path: Path) -> PretrainConfig:
    return PretrainConfig(examples=tmp_path / "no-examples", out=tmp_path / "ckpt")


def test_worker_reports_a_user_error_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = missing_examples_config(tmp_path)
    with pytest.raises(UserError) as direct:
        run(cfg)
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps(cfg.to_dict()))

    monkeypatch.setenv("RANK", "1")  # not rank 0 and no launch to tell: silent
    monkeypatch.delenv(ERROR_FILE_ENV, raising=False)
    assert worker.main([str(config_json)]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")  # rank 0 says it itself
    assert worker.main([str(config_json)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {direct.value}"
    errors = tmp_path / "errors.txt"  # launched: the parent will say it
    monkeypatch.setenv(ERROR_FILE_ENV, str(errors))
    assert worker.main([str(config_json)]) == 2
    assert capsys.readouterr().err == ""
    assert errors.read_text().splitlines() == [str(direct.value)]


def test_worker_names_its_config_for_an_unknown_option(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps({**missing_examples_config(tmp_path).to_dict(), "turbo": True}))
    errors = tmp_path / "errors.txt"
    monkeypatch.setenv(ERROR_FILE_ENV, str(errors))
    assert worker.main([str(config_json)]) == 2
    assert f"{config_json}: unknown option(s) turbo" in errors.read_text()


def read_ranks(out: Path, world: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture
def launch_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `launch` keeps its files in this test; empty again after every launch."""
    directory = tmp_path / "launch-tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.slow
def test_two_processes_share_collectives(tmp_path: Path, probe: str, monkeypatch: pytest.MonkeyPatch,
                                         launch_tmp: Path) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "run"
    launch(Launch(nproc_per_node=2), {"out": str(out), "mode": "collectives"}, module=probe)
    ranks = read_ranks(out, 2)
    assert [r["dist"] for r in ranks] == [[0, 2, 0, True, True], [1, 2, 1, False, True]]
    for record in ranks:
        assert record["sum"] == [3.0, 20.0]
        assert record["from0"] == {"sent by": 0} and record["from1"] == "rank 1"
        assert record["all"] == [0, 7]
        assert record["in_worker"]
        assert record["omp"] == str(max(1, usable_cpus() // 2))  # the cores shared, not torchrun's 1
    assert not list(launch_tmp.iterdir())
    assert not dist.is_initialized()  # the parent holds no group


@pytest.mark.slow
def test_a_workers_user_error_is_the_parents(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = missing_examples_config(tmp_path)
    with pytest.raises(UserError) as direct:
        run(cfg)
    with pytest.raises(UserError) as launched:
        launch(Launch(nproc_per_node=2), cfg.to_dict())
    assert str(launched.value) == str(direct.value)
    children = capfd.readouterr()
    # one clean line, the parent's: no worker echo and no torchrun failure report before it
    assert str(direct.value) not in children.err
    assert "FAILED" not in children.err and "exitcode" not in children.err
    assert not cfg.out.exists() or list(cfg.out.iterdir()) == []


@pytest.mark.slow
def test_a_crash_names_the_rank_that_failed_first(tmp_path: Path, probe: str, launch_tmp: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="worker of rank 1 failed \\(exit code 1\\)"):
        launch(Launch(nproc_per_node=2), {"out": str(out), "mode": "crash"}, module=probe)
    err = capfd.readouterr().err
    assert "RuntimeError: rank one broke" in err  # the worker's traceback passes through
    assert "Root Cause" in err  # and torchrun's report of which rank failed how
    assert not list(launch_tmp.iterdir())


@pytest.mark.slow
def test_two_nodes_meet_at_node_zero(tmp_path: Path, probe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's setting wins
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failures: list[BaseException] = []

    def node(rank: int) -> None:
        out = tmp_path / f"node{rank}"
        try:
            launch(Launch(nproc_per_node=1, nnodes=2, node_rank=rank, rdzv_endpoint=f"127.0.0.1:{port}"),
                   {"out": str(out), "mode": "collectives"}, module=probe)
        except BaseException as exc:
            failures.append(exc)

    nodes = [threading.Thread(target=node, args=(rank,)) for rank in (1, 0)]  # node 1 comes first
    for thread in nodes:
        thread.start()
    for thread in nodes:
        thread.join()
    assert failures == []
    first, second = (json.loads((tmp_path / f"node{r}" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert first["dist"] == [0, 2, 0, True, True] and second["dist"] == [1, 2, 0, False, True]
    assert first["all"] == second["all"] == [0, 7]
    assert first["omp"] == second["omp"] == "3"


def alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


DRIVER = """
import signal
import sys
from pathlib import Path
# as in a terminal: a shell starts background jobs (CI runners, `cmd &`) with SIGINT ignored, and
# Python then never turns a Ctrl-C into KeyboardInterrupt
signal.signal(signal.SIGINT, signal.default_int_handler)
from pretrain_cli.training.distributed import Launch, launch
out = Path(sys.argv[1])
launch(Launch(nproc_per_node=2), {"out": str(out), "mode": "sleep"}, module="ptk_probe")
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_stops_every_process(tmp_path: Path, probe: str, how: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # its own session, so the Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it)
    # reaches the driver, torchrun and the workers, and not pytest
    launch_tmp = tmp_path / "launch-tmp"
    launch_tmp.mkdir()
    stderr = open(tmp_path / "stderr.txt", "w")  # shown if the driver does not end by the signal
    parent = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], start_new_session=True,
                              stderr=stderr, env={**os.environ, "TMPDIR": str(launch_tmp)})
    try:
        while len(list(out.glob("pid*"))) < 2 and parent.poll() is None:
            time.sleep(0.1)
        workers = [int(path.read_text()) for path in out.glob("pid*")]
        assert len(workers) == 2
        if how == "ctrl-c":
            os.killpg(parent.pid, signal.SIGINT)
        else:  # to the parent alone, as `timeout` or a scheduler sends it
            os.kill(parent.pid, signal.SIGTERM)
        returncode = parent.wait(timeout=120)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
    stderr.close()
    assert returncode == -(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM), \
        (tmp_path / "stderr.txt").read_text()[-3000:]
    assert not any(alive(pid) for pid in workers)
    assert not list(launch_tmp.glob("ptk-launch-*"))  # ours are gone (torchrun keeps its own logs)
