"""Crash safety with real processes killed for real: kill/resume cycles end bit-identical to a clean run."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import random_docs, write_shard
from stream_export.checkpoint import FolderLock
from stream_export.cli import main


def export_args(model, inputs, out, *extra):
    return ["export", "--model", str(model), "--input", str(inputs), "--out", str(out), "--quiet",
            "--label-column", "label", "--id-column", "id", *map(str, extra)]


def contents(out):
    """Every dataset and every text file of a project (not the journal, whose timings differ)."""
    found = {}
    for name in ("states.hdf5", "train.hdf5", "meta.hdf5"):
        with h5py.File(os.path.join(out, name), "r") as f:
            f.visititems(lambda p, o: found.__setitem__(f"{name}/{p}", o[()]) if isinstance(o, h5py.Dataset)
                         else None)
    for name in ("words.dict", "labels.dict", "lstm.yml"):
        found[name] = open(os.path.join(out, name), "rb").read()
    return found


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
        assert getattr(a[key], "dtype", None) == getattr(b[key], "dtype", None), key


@pytest.fixture(scope="module")
def big(tmp_path_factory, models):
    """400 documents in 3 shards of several row groups, and the uninterrupted export of them."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(11)
    docs = random_docs(rng, 400)
    labels = rng.integers(0, 3, 400).tolist()
    ids = [f"d{i}" for i in range(400)]
    (d / "in").mkdir()
    for k, (lo, hi) in enumerate([(0, 150), (150, 151), (151, 400)]):
        write_shard(d / "in" / f"s{k}.parquet", docs[lo:hi], labels[lo:hi], ids[lo:hi], row_group_size=32)
    clean = d / "clean" / "out"  # same basename as the tests' folders: lstm.yml names the project after it
    assert main(export_args(models["classic"], d / "in", clean, "--batch-size", 8)) == 0
    return {"dir": d, "inputs": d / "in", "clean": contents(clean)}


def start(args, pause="batch:0.05"):
    env = dict(os.environ, STREAM_EXPORT_PAUSE_AT=pause)
    return subprocess.Popen([sys.executable, "-m", "stream_export", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def committed(out):
    try:
        with open(os.path.join(out, "export.json")) as f:
            return json.load(f)["committed"]["documents"]
    except (OSError, ValueError):
        return None


def wait_for(predicate, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError


def test_sigkill_at_twenty_points_then_resume_is_bit_identical(big, models, tmp_path):
    out = tmp_path / "out"
    first = export_args(models["classic"], big["inputs"], out, "--batch-size", 8, "--commit-every", 48)
    rng = random.Random(5)
    seen = []
    for i in range(21):
        journal = committed(out)
        args = first if journal is None else ["resume", str(out), "--quiet"]
        pause = "finish:30" if i == 20 else "batch:0.05"
        proc = start(args, pause)
        if i == 0:  # during start-up, before the folder even has a journal
            time.sleep(0.3)
        elif i == 1:  # files created, nothing committed yet
            wait_for(lambda: committed(out) is not None, proc)
        elif i == 20:  # everything committed, in the final step (dicts, lstm.yml)
            wait_for(lambda: committed(out) == 400, proc)
            time.sleep(1.0)
        else:
            target = (journal or 0) + rng.randint(1, 24)
            wait_for(lambda: (committed(out) or 0) >= min(target, 360), proc)
            time.sleep(rng.uniform(0, 0.15))  # land between commits, mid-batch
        assert proc.poll() is None, proc.communicate()[1]
        proc.kill()
        proc.wait()
        seen.append(committed(out))
    assert not (out / "lstm.yml").exists()  # never declared complete while being killed
    assert main(["resume", str(out), "--quiet"]) == 0
    assert_same(contents(out), big["clean"])
    distinct = {c for c in seen if c is not None}
    assert len(distinct) >= 10, seen  # the kills landed at many different commit points
    assert seen[0] is None and seen[1] == 0 and seen[-1] == 400


def test_sigterm_commits_prints_resume_command_and_exits_75(big, models, tmp_path):
    out = tmp_path / "out"
    proc = start(export_args(models["classic"], big["inputs"], out, "--batch-size", 8,
                             "--commit-every", 1_000_000), pause="batch:0.1")
    assert wait_for(lambda: (out / "states.hdf5").exists() and committed(out) == 0, proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 75, err
    assert f"stream-export resume {out}" in err
    done = committed(out)
    assert 0 < done < 400 and done % 8 == 0  # the commit on SIGTERM kept every finished batch
    with h5py.File(out / "states.hdf5") as f:
        assert f["states1"].shape[0] >= done * 6
    assert main(["resume", str(out), "--quiet"]) == 0
    assert_same(contents(out), big["clean"])


def test_second_sigint_aborts_at_once_keeping_the_last_commit(big, models, tmp_path):
    out = tmp_path / "out"
    proc = start(export_args(models["classic"], big["inputs"], out, "--batch-size", 8, "--commit-every", 48),
                 pause="batch:0.3")
    assert wait_for(lambda: (committed(out) or 0) >= 16, proc)
    proc.send_signal(signal.SIGINT)
    seen = []  # a second signal sent before the first was handled would merge with it in the kernel
    while not any("SIGINT received" in line for line in seen):
        seen.append(proc.stderr.readline())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(seen) + err
    assert main(["resume", str(out), "--quiet"]) == 0
    assert_same(contents(out), big["clean"])


def test_refusals_name_what_changed(big, models, tmp_path, capsys):
    out = tmp_path / "out"
    args = export_args(models["classic"], big["inputs"], out, "--batch-size", 8)
    proc = start(args, pause="batch:0.05")
    assert wait_for(lambda: (committed(out) or 0) >= 40, proc)
    proc.kill()
    proc.wait()

    assert main(export_args(models["classic"], big["inputs"], out, "--batch-size", 16, "--resume")) == 6
    assert "batch_size: 8 -> 16" in capsys.readouterr().err

    with FolderLock(str(out)):
        assert main(["resume", str(out), "--quiet"]) == 5
        assert f"pid {os.getpid()}" in capsys.readouterr().err

    extra = big["dir"] / "in" / "s9.parquet"
    write_shard(extra, [[1, 2]], [0], ["x"])
    try:
        assert main(["resume", str(out), "--quiet"]) == 6
        assert "s9.parquet" in capsys.readouterr().err
    finally:
        extra.unlink()

    model_copy = tmp_path / "model.keras"
    model_copy.write_bytes(open(models["classic"], "rb").read())
    journal = json.loads((out / "export.json").read_text())
    journal["config"]["model"] = str(model_copy)
    (out / "export.json").write_text(json.dumps(journal))
    model_copy.write_bytes(open(models["stacked"], "rb").read())
    assert main(["resume", str(out), "--quiet"]) == 6
    err = capsys.readouterr().err
    assert f"model file {model_copy} changed" in err
    model_copy.write_bytes(open(models["classic"], "rb").read())
    os.utime(model_copy, ns=(journal["fingerprints"]["model"]["mtime_ns"],) * 2)
    assert main(["resume", str(out), "--quiet"]) == 0
    assert_same(contents(out), big["clean"])
    assert main(["resume", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err


def test_status_reports_progress(big, models, tmp_path, capsys):
    out = tmp_path / "out"
    proc = start(export_args(models["classic"], big["inputs"], out, "--batch-size", 8, "--commit-every", 48))
    assert wait_for(lambda: (committed(out) or 0) >= 80, proc)
    assert main(["status", str(out)]) == 0
    assert f"running, exported by pid {proc.pid} on " in capsys.readouterr().out
    proc.kill()
    proc.wait()
    assert main(["status", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["running"] is None
    done = committed(out)
    assert info["committed_documents"] == done and info["total_documents"] == 400
    assert info["committed_rows"] == done * 6 and info["total_rows"] == 2400
    assert info["complete"] is False and info["resumable"] is True
    assert info["percent"] == round(100 * done / 400, 2)
    assert main(["resume", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "complete" in capsys.readouterr().out


def test_disk_full_stops_cleanly_and_resumes_after_space_is_freed(models, tmp_path, tmpfs, capsys):
    rng = np.random.default_rng(2)
    docs = random_docs(rng, 30_000)
    write_shard(tmp_path / "s.parquet", docs, rng.integers(0, 3, 30_000).tolist(),
                [f"d{i}" for i in range(30_000)], row_group_size=5000)
    args = export_args(models["classic"], tmp_path / "s.parquet", tmpfs / "out", "--batch-size", 512,
                       "--commit-every", 20_000)
    assert main(export_args(models["classic"], tmp_path / "s.parquet", tmp_path / "clean" / "out",
                            "--batch-size", 512)) == 0
    assert main(args) == 5
    err = capsys.readouterr().err
    assert "No space left on device" in err or "disk full" in err, err
    assert "resume" in err
    done = committed(tmpfs / "out")
    assert done is not None and 0 < done < 30_000
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    assert main(["resume", str(tmpfs / "out"), "--quiet"]) == 0
    assert_same(contents(tmpfs / "out"), contents(tmp_path / "clean" / "out"))
