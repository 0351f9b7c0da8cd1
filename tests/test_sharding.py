"""The split of the work between workers: a pure function, checked against its properties, and the worker
index taken from SLURM / Kubernetes variables."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_export.errors import ConfigError
from stream_export.reader import Shard
from stream_export.sharding import part_of, split, worker_from_env


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1000), max_size=40), st.integers(1, 12))
def test_split_is_contiguous_covering_and_balanced(units, n):
    runs = split(units, n)
    assert len(runs) == n
    assert runs[0][0] == 0 and runs[-1][1] == len(units)
    for (a, b), (c, _) in zip(runs, runs[1:]):
        assert a <= b == c  # contiguous, in order, nothing skipped or repeated
    total, biggest = sum(units), max(units, default=0)
    for a, b in runs:
        assert abs(sum(units[a:b]) - total / n) <= biggest  # balanced by rows, up to one unit
    assert split(units, n) == runs  # deterministic


def test_split_balances_rows_not_files():
    # one big shard of 4 row groups and three tiny ones: by file count worker 0 would get 97% of the rows
    shards = [Shard("a", (100, 100, 100, 100)), Shard("b", (5,)), Shard("c", (5,)), Shard("d", (5,))]
    parts = [part_of(shards, i, 2) for i in range(2)]
    assert [(p.first_doc, p.stop_doc) for p in parts] == [(0, 200), (200, 415)]
    assert parts[0].units == (0, 2) and parts[1].units == (2, 7)


def test_more_workers_than_row_groups_gives_empty_parts():
    parts = [part_of([Shard("a", (3, 4))], i, 4) for i in range(4)]
    assert sum(p.documents for p in parts) == 7
    assert [p.first_doc for p in parts] == sorted(p.first_doc for p in parts)
    assert sum(p.documents == 0 for p in parts) == 2


def test_worker_index_from_the_environment():
    assert worker_from_env(3, 1, env={}) == (1, 3, "--worker-index")
    index, count, source = worker_from_env(None, None, env={"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                                                            "SLURM_ARRAY_TASK_COUNT": "4"})
    assert (index, count) == (2, 4) and "SLURM_ARRAY_TASK_ID=7" in source
    index, count, source = worker_from_env(5, None, env={"JOB_COMPLETION_INDEX": "3"})
    assert (index, count) == (3, 5) and "JOB_COMPLETION_INDEX" in source
    with pytest.raises(ConfigError, match="completions"):
        worker_from_env(None, None, env={"JOB_COMPLETION_INDEX": "3"})
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_COUNT=4"):
        worker_from_env(3, None, env={"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"})
    with pytest.raises(ConfigError, match="--worker-index"):
        worker_from_env(3, None, env={})
    with pytest.raises(ConfigError, match="0..2"):
        part_of([Shard("a", (3,))], 3, 3)


@settings(max_examples=40, deadline=None)
@given(docs=st.lists(st.lists(st.integers(1, 50), max_size=5), max_size=30), row_group_size=st.integers(1, 4),
       batch_size=st.integers(1, 6), data=st.data())
def test_aligned_batches_of_a_document_range(tmp_path_factory, docs, row_group_size, batch_size, data):
    """A part's reader: documents [start, stop) exactly, in batches that end on multiples of batch_size."""
    import numpy as np

    from conftest import write_shard
    from stream_export.reader import Columns, iter_batches, open_shards

    start = data.draw(st.integers(0, len(docs)), label="start")
    stop = data.draw(st.integers(start, len(docs)), label="stop")
    path = write_shard(tmp_path_factory.mktemp("r") / "a.parquet", docs, row_group_size=row_group_size)
    batches = list(iter_batches(open_shards([path], Columns()), Columns(), 5, batch_size, start_doc=start,
                                stop_doc=stop, align=True))
    got = [b.first_doc + i for b in batches for i in range(len(b.tokens))]
    assert got == list(range(start, stop))
    for b in batches:
        assert b.first_doc // batch_size == (b.first_doc + len(b.tokens) - 1) // batch_size  # never crosses
        assert len(b.tokens) == batch_size or b.first_doc % batch_size or b.first_doc + len(b.tokens) == stop
    lengths = np.concatenate([b.lengths for b in batches]).tolist() if batches else []
    assert lengths == [len(d) for d in docs[start:stop]]
