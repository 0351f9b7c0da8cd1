"""Sharded exports: N workers by index, then `stream-export merge`, give exactly the single-process export;
a killed part resumes; a missing, incomplete or different part stops the merge and is named."""

import json
import os
import shutil
import signal
import time

import h5py
import numpy as np
import pytest

from conftest import random_docs, write_shard
from stream_export.cli import main
from test_resume import assert_same, committed, contents, start, wait_for


def args(model, inputs, out, *extra):
    return ["export", "--quiet", "--model", str(model), "--input", str(inputs), "--out", str(out),
            "--batch-size", "4", "--label-column", "label", "--id-column", "id", *map(str, extra)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, models):
    """57 documents in 3 shards of row groups of 3 (and an empty shard), so that parts start between
    batches of 4, and the single-process exports."""
    d = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(3)
    docs = random_docs(rng, 57)
    labels = rng.integers(0, 3, 57).tolist()
    ids = [f"d{i}" for i in range(57)]
    (d / "in").mkdir()
    for k, (lo, hi) in enumerate([(0, 23), (23, 23), (23, 31), (31, 57)]):
        write_shard(d / "in" / f"s{k}.parquet", docs[lo:hi], labels[lo:hi], ids[lo:hi], row_group_size=3)
    single = {}
    for name, extra in {"plain": (), "skip": ("--skip-padding", "--predictions")}.items():
        out = d / f"single-{name}" / "out"  # the same basename as the merged folders: lstm.yml names it
        assert main(args(models["classic"], d / "in", out, *extra)) == 0
        single[name] = contents(out)
    return {"dir": d, "inputs": d / "in", "single": single}


def run_workers(models, corpus, out, n, *extra):
    for i in range(n):
        assert main(args(models["classic"], corpus["inputs"], out, "--num-workers", n, "--worker-index", i,
                         *extra)) == 0


@pytest.mark.parametrize("n, options", [(1, "plain"), (2, "plain"), (3, "plain"), (3, "skip")])
def test_workers_by_index_merge_to_the_single_process_export(models, corpus, tmp_path, n, options):
    extra = ("--skip-padding", "--predictions") if options == "skip" else ()
    out = tmp_path / "out"
    run_workers(models, corpus, out, n, *extra)
    assert sorted(os.listdir(out / "parts")) == [f"part-{i:05d}-of-{n:05d}" for i in range(n)]
    assert main(["merge", "--quiet", str(out)]) == 0
    assert_same(contents(out), corpus["single"][options])
    with h5py.File(out / "states.hdf5", "r") as f:
        assert f["states1"].is_virtual  # by default, a view over the parts' files
    assert main(["verify", str(out), "--sample", "8"]) == 0
    assert main(["inspect", str(out)]) == 0


def test_copy_keeps_the_parts_layout_and_merge_is_idempotent(models, corpus, tmp_path):
    out = tmp_path / "out"
    run_workers(models, corpus, out, 2)
    assert main(["merge", "--quiet", str(out)]) == 0
    first = contents(out)
    assert main(["merge", "--quiet", str(out)]) == 0  # again: the same project
    assert_same(contents(out), first)
    assert main(["merge", "--quiet", "--copy", str(out)]) == 0  # and physical files over the virtual ones
    assert_same(contents(out), corpus["single"]["plain"])
    with h5py.File(out / "states.hdf5", "r") as merged, \
            h5py.File(out / "parts" / "part-00000-of-00002" / "states.hdf5", "r") as part:
        ds, ref = merged["states1"], part["states1"]
        assert not ds.is_virtual
        assert (ds.dtype, ds.chunks, ds.compression, ds.maxshape) == (ref.dtype, ref.chunks, ref.compression,
                                                                        ref.maxshape)
    journal = json.loads((out / "export.json").read_text())
    assert journal["complete"] and journal["merged"]["mode"] == "copy"
    assert journal["committed"]["documents"] == 57


def test_virtual_merge_reads_the_same_after_the_folder_moves(models, corpus, tmp_path):
    out = tmp_path / "a" / "out"
    run_workers(models, corpus, out, 3)
    assert main(["merge", "--quiet", str(out)]) == 0
    moved = tmp_path / "b" / "out"
    moved.parent.mkdir()
    shutil.move(str(out), str(moved))
    with h5py.File(moved / "states.hdf5", "r") as f:
        sources = [s.file_name for s in f["states1"].virtual_sources()]
    assert sources and all(not os.path.isabs(s) for s in sources)
    assert_same(contents(moved), corpus["single"]["plain"])
    assert main(["verify", str(moved), "--sample", "5"]) == 0


def test_missing_incomplete_or_different_part_is_named(models, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    run_workers(models, corpus, out, 3)
    part1 = out / "parts" / "part-00001-of-00003"
    shutil.move(str(part1), str(tmp_path / "aside"))
    assert main(["merge", str(out)]) == 8
    assert "part-00001-of-00003" in capsys.readouterr().err
    assert not (out / "lstm.yml").exists()
    shutil.move(str(tmp_path / "aside"), str(part1))
    # the same part made with another batch size: a different export command
    assert main(args(models["classic"], corpus["inputs"], out, "--num-workers", 3, "--worker-index", 2,
                     "--batch-size", 5, "--overwrite")) == 0
    assert main(["merge", str(out)]) == 8
    err = capsys.readouterr().err
    assert "part-00002-of-00003" in err and "batch_size" in err
    assert main(args(models["classic"], corpus["inputs"], out, "--num-workers", 3, "--worker-index", 2,
                     "--overwrite")) == 0
    assert main(["merge", "--quiet", str(out)]) == 0
    assert_same(contents(out), corpus["single"]["plain"])


def test_a_part_killed_midway_resumes_and_merges(models, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args(models["classic"], corpus["inputs"], out, "--num-workers", 2, "--worker-index", 1)) == 0
    part0 = out / "parts" / "part-00000-of-00002"
    proc = start(args(models["classic"], corpus["inputs"], out, "--num-workers", 2, "--worker-index", 0,
                      "--commit-every", 8), pause="batch:0.3")
    assert wait_for(lambda: (committed(part0) or 0) >= 8, proc), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < committed(part0) < 28
    assert main(["merge", str(out)]) == 8
    assert "part-00000-of-00002 is incomplete" in capsys.readouterr().err
    assert main(["status", "--json", str(out)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(p["part"], p["complete"]) for p in status["parts"]] == [("part-00000-of-00002", False),
                                                                      ("part-00001-of-00002", True)]
    assert status["parts"][0]["committed_documents"] == committed(part0)
    assert main(["resume", "--quiet", str(part0)]) == 0
    assert main(["merge", str(out)]) == 0, capsys.readouterr().err
    assert_same(contents(out), corpus["single"]["plain"])


def test_dask_cluster_of_two_processes_survives_a_killed_worker(models, corpus, tmp_path, monkeypatch, capsys):
    """Three parts on a LocalCluster of 2 worker processes, through --engine dask --scheduler; the worker
    exporting part 0 is SIGKILLed midway: Dask runs the task again, which resumes the part."""
    distributed = pytest.importorskip("dask.distributed")
    import threading

    monkeypatch.setenv("STREAM_EXPORT_PAUSE_AT", "batch:0.25")  # inherited by the worker processes
    out = tmp_path / "out"
    part0 = out / "parts" / "part-00000-of-00003"
    killed = []

    def kill_part0_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if (committed(part0) or 0) >= 4:
                pid = int((part0 / ".stream_export.lock").read_text().split()[1])
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, committed(part0)))
            time.sleep(0.02)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        watcher = threading.Thread(target=kill_part0_worker)
        watcher.start()
        command = args(models["classic"], corpus["inputs"], out, "--engine", "dask", "--num-workers", 3,
                       "--scheduler", cluster.scheduler_address, "--commit-every", 8,
                       "--summary-json", tmp_path / "summary.json")
        code = main([a for a in command if a != "--quiet"])  # the progress lines are checked
        watcher.join()
    err = capsys.readouterr().err
    assert code == 0, err
    assert killed and 4 <= killed[0][1] < 20, killed
    assert "3/3 parts done" in err and "rows/s" in err
    assert_same(contents(out), corpus["single"]["plain"])
    tasks = json.loads((tmp_path / "summary.json").read_text())["tasks"]
    assert len(tasks) == 3 and killed[0][0] not in {t["pid"] for t in tasks}  # part 0 finished elsewhere
    for pid in {t["pid"] for t in tasks}:  # each process loaded the model once, whatever it ran
        assert max(t["model_loads"] for t in tasks if t["pid"] == pid) == 1


def test_worker_index_from_slurm_and_kubernetes(models, corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    for task in (10, 11):  # a SLURM array 10-12: index = task - SLURM_ARRAY_TASK_MIN
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        assert main([a for a in args(models["classic"], corpus["inputs"], out, "--num-workers", "auto")
                     if a != "--quiet"]) == 0
        assert f"part {task - 10} of 3 (from SLURM_ARRAY_TASK_ID={task}" in capsys.readouterr().err
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    assert main(args(models["classic"], corpus["inputs"], out, "--num-workers", "auto")) == 2  # no count
    assert main([a for a in args(models["classic"], corpus["inputs"], out, "--num-workers", 3)
                 if a != "--quiet"]) == 0
    assert "part 2 of 3 (from JOB_COMPLETION_INDEX=2" in capsys.readouterr().err
    assert main(["merge", "--quiet", str(out)]) == 0
    assert_same(contents(out), corpus["single"]["plain"])


def test_more_workers_than_row_groups_leaves_empty_parts_that_merge(models, tmp_path):
    from conftest import random_docs as docs_of

    folder = tmp_path / "in"
    folder.mkdir()
    docs = docs_of(np.random.default_rng(2), 5)
    write_shard(folder / "a.parquet", docs, [0, 1, 2, 0, 1], [f"x{i}" for i in range(5)], row_group_size=2)
    assert main(args(models["classic"], folder, tmp_path / "single" / "out")) == 0
    out = tmp_path / "out"
    for i in range(6):  # 3 row groups, 6 workers: 3 parts without documents
        assert main(args(models["classic"], folder, out, "--num-workers", 6, "--worker-index", i)) == 0
    assert main(["merge", "--quiet", str(out)]) == 0
    assert_same(contents(out), contents(tmp_path / "single" / "out"))
    assert main(["verify", str(out), "--sample", "3"]) == 0
