"""Downstream tasks: what `ptk finetune TASK` can train on, checked cheaply and loaded as examples.

    >>> data = load_task(TaskSource("rotten_tomatoes"))                       # ships with ptk (offline)
    >>> data = load_task(TaskSource("mrpc", data_dir=Path("glue/MRPC")))      # GLUE in its real layout
    >>> data = load_task(TaskSource("stsb", hub=True))                        # GLUE from the hub (network)
    >>> data = load_task(TaskSource("reviews.jsonl", label_column="stars"))   # the user's own file
    >>> data.kind, data.labels, data.metric, data.train[0]
    ('classification', ('1', '2', '3', '4', '5'), 'accuracy', Example(text='...', text_pair=None, label=4))

Nothing here imports torch, so the CLI can list and check tasks cheaply.
"""

from __future__ import annotations

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.tasks.data import Example, TaskData, TaskKind, TaskSource, hash_subset
from pretrain_cli.tasks.files import (
    CONLL_SUFFIXES,
    TABLE_SUFFIXES,
    load_user_files,
    looks_like_file,
    user_file_problems,
)
from pretrain_cli.tasks.glue import GLUE, load_glue, load_glue_hub
from pretrain_cli.tasks.offline import OFFLINE_TASKS

__all__ = ["Example", "TaskData", "TaskKind", "TaskSource", "hash_subset", "known_tasks", "load_task",
           "task_problems"]


def known_tasks() -> list[str]:
    return sorted([*OFFLINE_TASKS, *GLUE])


def task_problems(source: TaskSource) -> list[str]:
    """Everything wrong with `source`, as config problems; reads no file, only checks they exist."""
    task = source.task
    if task in GLUE:
        return known_task_problems(source, GLUE[task].kind) + glue_problems(source)
    if task in OFFLINE_TASKS:
        problems = known_task_problems(source, OFFLINE_TASKS[task].kind)
        if source.data_dir is not None or source.hub:
            problems.append(f"task {task} ships with ptk and reads no --data-dir or --hub; drop them")
        try:
            sample_path(OFFLINE_TASKS[task].sample)
        except UserError as error:
            problems.append(f"task {task}: {error}")
        return problems
    if looks_like_file(task):
        return user_file_problems(source)
    return [f"unknown task {task!r}; known tasks: {', '.join(known_tasks())}; or give the path of a train "
            f"file ({', '.join(TABLE_SUFFIXES + CONLL_SUFFIXES)})"]


def known_task_problems(source: TaskSource, kind: TaskKind) -> list[str]:
    """A known task fixes its files, columns and kind: the options that set them are for user files."""
    problems = []
    defaults = TaskSource(source.task)
    flags = {"text_column": "--text-column", "text_pair_column": "--text-pair-column",
             "label_column": "--label-column"}
    columns = [flag for field, flag in flags.items() if getattr(source, field) != getattr(defaults, field)]
    if columns:
        problems.append(f"task {source.task} has fixed columns; {', '.join(columns)} are for your own "
                        f"files; drop them")
    if source.dev_file is not None:
        problems.append(f"task {source.task} has its own dev split; --dev-file is for your own files; "
                        f"drop it")
    if source.task_type not in ("auto", kind):
        problems.append(f"task {source.task} is a {kind} task, not {source.task_type}; drop --task-type")
    return problems


def glue_problems(source: TaskSource) -> list[str]:
    layout = GLUE[source.task]
    if source.data_dir is None and not source.hub:
        offline = ", ".join(sorted(OFFLINE_TASKS))
        return [f"task {source.task} reads the GLUE files {layout.describe()}: download GLUE and pass "
                f"--data-dir DIR, or pass --hub to fetch it from the Hugging Face hub (needs network); "
                f"tasks that ship with ptk need neither: {offline}"]
    if source.data_dir is not None and source.hub:
        return [f"task {source.task}: pass --data-dir or --hub, not both"]
    if source.data_dir is not None and not source.data_dir.is_dir():
        return [f"--data-dir {source.data_dir}: no such directory"]
    return []


def load_task(source: TaskSource) -> TaskData:
    """The task's train and dev examples; a UserError names any bad option, file, line or record."""
    problems = task_problems(source)
    if problems:
        raise UserError("; ".join(problems))
    if source.task in OFFLINE_TASKS:
        return OFFLINE_TASKS[source.task].load()
    if source.task in GLUE and source.hub:
        return load_glue_hub(source.task)
    if source.task in GLUE:
        assert source.data_dir is not None  # task_problems saw to it
        return load_glue(source.task, source.data_dir)
    return load_user_files(source)
