"""Splitting an export between workers: which documents worker i of n exports, and where its part goes.

The unit of work is one row group of one shard (a reader can start there without reading what comes
before). Units are taken in global document order (shards in sorted path order, row groups in file order)
and cut into n contiguous runs balanced by rows, so part i holds the global documents [first, stop) and
the parts, concatenated in index order, are the whole corpus in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from stream_export.errors import ConfigError

PARTS = "parts"


@dataclass(frozen=True)
class Part:
    index: int
    count: int
    first_doc: int
    """Global index of the part's first document."""
    stop_doc: int
    """One past its last document."""
    units: tuple[int, int]
    """[first, stop) of the (shard, row group) units, numbered in global order."""

    @property
    def documents(self) -> int:
        return self.stop_doc - self.first_doc

    def to_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "first_doc": self.first_doc,
                "stop_doc": self.stop_doc, "units": list(self.units)}


def split(unit_rows, n: int) -> list[tuple[int, int]]:
    """Cut the units (rows per unit, in global order) into n contiguous [first, stop) runs balanced by
    rows: run i ends at the unit boundary nearest to i+1 n-ths of all rows. Every run's rows differ from
    total / n by at most the largest unit's rows. Deterministic: it depends on the row counts only."""
    if n < 1:
        raise ValueError(n)
    bounds = [0]  # bounds[j] = rows before unit j
    for rows in unit_rows:
        bounds.append(bounds[-1] + rows)
    total, cuts, j = bounds[-1], [0], 0
    for i in range(1, n):
        target = total * i / n
        while j < len(unit_rows) and bounds[j + 1] <= target:
            j += 1  # the last boundary at or below the target
        if j < len(unit_rows) and bounds[j + 1] - target < target - bounds[j]:
            cut = j + 1  # the boundary above is nearer
        else:
            cut = j
        cuts.append(max(cut, cuts[-1]))
    cuts.append(len(unit_rows))
    return [(cuts[i], cuts[i + 1]) for i in range(n)]


def part_of(shards, index: int, count: int) -> Part:
    """Worker `index` of `count`: its units and global document range over the shards (reader.Shard list)."""
    if count < 1:
        raise ConfigError(f"--num-workers must be at least 1; got {count}")
    if not 0 <= index < count:
        raise ConfigError(f"--worker-index must be in 0..{count - 1} for --num-workers {count}; got {index}")
    unit_rows = [rows for shard in shards for rows in shard.row_groups]
    first, stop = split(unit_rows, count)[index]
    return Part(index, count, sum(unit_rows[:first]), sum(unit_rows[:stop]), (first, stop))


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


def part_dir(out: str, index: int, count: int) -> str:
    return os.path.join(out, PARTS, part_name(index, count))


def worker_from_env(count: int | None, index: int | None, env=os.environ) -> tuple[int, int, str]:
    """(index, count, where they came from): --worker-index, else a SLURM job array (SLURM_ARRAY_TASK_ID
    minus SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT), else a Kubernetes indexed job
    (JOB_COMPLETION_INDEX; Kubernetes exposes no count, so --num-workers must give it)."""
    if index is not None:
        if count is None:
            raise ConfigError("--worker-index needs --num-workers (how many parts the export is split into)")
        return index, count, "--worker-index"
    if "SLURM_ARRAY_TASK_ID" in env:
        try:
            task, low = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            tasks = int(env["SLURM_ARRAY_TASK_COUNT"]) if "SLURM_ARRAY_TASK_COUNT" in env else None
        except ValueError as e:
            raise ConfigError(f"SLURM array variables are not integers ({e})") from None
        if count is None:
            count = tasks
        if count is None:
            raise ConfigError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --num-workers")
        if tasks is not None and tasks != count:
            raise ConfigError(f"--num-workers {count} disagrees with SLURM_ARRAY_TASK_COUNT={tasks}; "
                              "submit the array with --array=0-{count - 1} or drop --num-workers")
        return task - low, count, (f"SLURM_ARRAY_TASK_ID={task}" + (f" - SLURM_ARRAY_TASK_MIN={low}" if low else "")
                                   + f", {'SLURM_ARRAY_TASK_COUNT' if tasks else '--num-workers'}={count}")
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            raise ConfigError("JOB_COMPLETION_INDEX is set (a Kubernetes indexed job) but Kubernetes does not "
                              "tell the number of indexes: give --num-workers equal to the job's completions")
        try:
            task = int(env["JOB_COMPLETION_INDEX"])
        except ValueError:
            raise ConfigError(f"JOB_COMPLETION_INDEX={env['JOB_COMPLETION_INDEX']!r} is not an integer") from None
        return task, count, f"JOB_COMPLETION_INDEX={task}, --num-workers={count}"
    raise ConfigError("--num-workers without --worker-index: run it as a SLURM job array "
                      "(SLURM_ARRAY_TASK_ID) or a Kubernetes indexed job (JOB_COMPLETION_INDEX), or give "
                      "--worker-index I, or use --engine dask to run every part")
