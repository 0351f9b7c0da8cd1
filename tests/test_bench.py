"""tools/bench.py at its tiny size, in a subprocess: every row of the table is there with sane figures.
A smoke test of the tool only; the figures are not asserted (see docs/BENCHMARKS.md)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_tiny_prints_every_row(tmp_path):
    figures, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--tiny", "--no-keract",
                           "--quiet", "--json", str(figures), "--markdown", str(markdown)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(figures.read_text())
    docs, t = 8, 20
    for name in ("classic", "small"):
        forward, export = r[f"{name}/forward"], r[f"{name}/export"]
        assert forward["rows"] == docs * t and forward["seconds"] > 0 and forward["device"]
        for scale in (1, 2):
            run = r[f"{name}/scale{scale}"]
            assert "error" not in run, run
            assert run["rows"] == scale * docs * t  # every row of the corpus was exported
            assert 0 < run["loop_seconds"] <= run["seconds"] and run["rss"] > 100 and run["bytes"] > 0
        recipe = r[f"{name}/recipe1"]
        assert recipe["rows"] == docs * t and recipe["seconds"] > 0 and recipe["rss"] > 100
        assert r[f"{name}/keract"]["error"] == "not measured: --no-keract"
        writer = r[f"{name}/writer"]
        assert writer["rows"] == 4 * 4 * t and writer["bytes"] > writer["plain_bytes"] > 0
    options = {k: v for k, v in r.items() if k.startswith("option/")}
    assert len(options) == 2 and all("error" not in v and v["rows"] == docs * t for v in options.values())
    gzip = next(v for k, v in options.items() if "gzip" in k)
    default = next(v for k, v in options.items() if "default" in k)
    assert gzip["bytes"] < default["bytes"]  # the compression option reached the files
    text = markdown.read_text()
    assert text in done.stdout
    for needle in ("| 1 | bare forward", "| 2 | stream_export, streaming loop", "| 3 | classic recipe",
                   "| 4 | keract", "| 5 | stream_export, whole export | 2x", "| 6 | writer only",
                   "### 7. options", "`--dtype float16 --compression gzip:1`", "Machine: ", "Targets"):
        assert needle in text, needle
    assert text.count("| 1 | bare forward") == 2  # one table per model
