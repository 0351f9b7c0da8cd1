"""`--engine dask`: every part of a sharded export as a Dask task, then the merge (needs stream_export[dask]).

Each task exports its part with resume=True, so a task that failed, or whose worker died, continues its
part from the last commit when Dask runs it again. Each worker process keeps the loaded model for the next
part it is given (pipeline.export(cache_model=True)). The folders must be on a filesystem that the
workers and this process share (the merge reads the parts).
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from stream_export.config import ExportConfig
from stream_export.errors import ConfigError, ExportError, MergeError
from stream_export.sharding import PARTS, part_name

RETRIES = 2
"""A task that raised is run again this many times (a dead worker's task is rescheduled by Dask itself)."""


def run_part(config: ExportConfig) -> dict:
    """The task: export (or continue) one part in this worker process; its summary, with who ran it."""
    from stream_export import pipeline

    summary = pipeline.export(config, resume=True, quiet=True, log=lambda msg: None, cache_model=True)
    return dict(summary, pid=os.getpid(), model_loads=pipeline.model_loads())


def run_dask(config: ExportConfig, num_workers: int | None, scheduler: str | None = None, *,
             overwrite: bool = False, quiet: bool = False, log=None) -> dict:
    """Run the num_workers parts of config on a Dask cluster (scheduler address, or a LocalCluster of
    num_workers single-threaded processes), then merge them in config.out. Returns the merge's summary."""
    log = log or ((lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--engine dask needs Dask: pip install 'stream_export[dask]'") from None
    if not num_workers or num_workers < 1:
        raise ConfigError("--engine dask needs --num-workers N: the number of parts to export as tasks")
    if overwrite:
        for i in range(num_workers):
            shutil.rmtree(os.path.join(config.out, PARTS, part_name(i, num_workers)), ignore_errors=True)
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=min(num_workers, os.cpu_count() or 1), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"cannot reach the Dask scheduler {scheduler or '(local cluster)'}: {e}") from e
    started = time.monotonic()
    try:
        log(f"dask: {num_workers} parts on {len(client.scheduler_info()['workers'])} workers "
            f"({scheduler or 'local cluster'})")
        futures = {client.submit(run_part, config.replace(num_workers=num_workers, worker_index=i),
                                 key=f"stream-export-{part_name(i, num_workers)}-{time.time_ns()}",
                                 retries=RETRIES, pure=False): i for i in range(num_workers)}
        done, rows, runs = 0, 0, []
        for future in as_completed(futures):
            try:
                summary = future.result()
            except ExportError:
                raise
            except Exception as e:  # the task failed RETRIES + 1 times, or its worker kept dying
                folder = os.path.join(config.out, PARTS, part_name(futures[future], num_workers))
                raise MergeError(f"part {folder} failed on the cluster ({type(e).__name__}: {e}); its "
                                 "committed work is kept: run the same command again to continue") from e
            done += 1
            rows += summary["rows"]
            runs.append(summary)
            elapsed = time.monotonic() - started
            log(f"dask: {done}/{num_workers} parts done, {rows:,} rows, {rows / max(elapsed, 1e-9):,.0f} rows/s")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    from stream_export.merge import merge

    merged = merge(config.out, log=log)
    seconds = time.monotonic() - started
    merged.update(seconds=round(seconds, 3), rows_per_second=round(merged["rows"] / seconds, 1),
                  tokens_per_second=round(merged["tokens"] / seconds, 1),
                  bytes=_size(config.out), tasks=[{k: s[k] for k in ("out", "rows", "pid", "model_loads")}
                                                  for s in runs])
    return merged


def _size(out):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files)
