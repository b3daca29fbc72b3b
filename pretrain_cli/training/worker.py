"""One process of a multi-process `ptk pretrain`: what torchrun starts on every rank.

    python -m pretrain_cli.training.worker CONFIG_JSON   # written by `launch` into a temporary directory

`ptk pretrain --gpus N` (or `--procs N`) writes its config as JSON and launches N of these through
`training.distributed.launch`; each rebuilds the config and runs the same `stages.pretrain.run`,
which joins the process group from the RANK / WORLD_SIZE / LOCAL_RANK that torchrun set.

A `UserError` becomes exit code 2 and one line: left in $PTK_ERROR_FILE for the parent to report
when it launched this worker, else printed on stderr by rank 0 alone. Any other exception keeps its
traceback (exit code 1); a Ctrl-C exits with 130 without one, since every rank would print it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pretrain_cli.console import console
from pretrain_cli.errors import UserError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: python -m pretrain_cli.training.worker CONFIG_JSON")
    # Offline by default, as the CLI is; this must precede the first transformers import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pretrain_cli.stages.pretrain import PretrainConfig, run
    from pretrain_cli.training.distributed import ERROR_FILE_ENV, barrier, destroy_process_group, worker_error

    config_json = argv[0]
    try:
        values = json.loads(Path(config_json).read_text())
        run(PretrainConfig.from_dict(values, where=config_json))
        # gloo aborts a process (SIGABRT) whose peer tears the group down while its own last
        # collectives are still in flight: finished ranks leave together
        barrier()
    except UserError as exc:
        if os.environ.get(ERROR_FILE_ENV):
            worker_error(str(exc))
        elif os.environ.get("RANK", "0") == "0":
            console.print(f"error: {exc}", markup=False, soft_wrap=True, style="bold red")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
