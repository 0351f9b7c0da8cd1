"""--input as a URI: S3 for real, against moto's S3-compatible server on 127.0.0.1 (a subprocess), and file://."""

import os
import socket
import subprocess
import sys
import time

import pytest

from stream_export.cli import main
from test_resume import assert_same, contents


def export(models, inputs, out, *extra):
    return main(["export", "--quiet", "--model", models["classic"], "--input", inputs, "--out", str(out),
                 "--batch-size", "4", "--label-column", "label", "--id-column", "id", *map(str, extra)])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port, and the query that points pyarrow at it."""
    pytest.importorskip("moto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
    try:
        yield f"?endpoint_override=127.0.0.1:{port}&scheme=http"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def upload(query, bucket, folder):
    from pyarrow import fs

    s3 = fs.FileSystem.from_uri(f"s3://{bucket}{query}&allow_bucket_creation=true")[0]
    s3.create_dir(bucket)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as src, s3.open_output_stream(f"{bucket}/corpus/{name}") as dst:
            dst.write(src.read())


def test_s3_input_gives_the_local_export(models, corpus, s3, tmp_path, capsys):
    upload(s3, "shards", corpus["dir"])
    assert export(models, corpus["dir"], tmp_path / "local" / "out") == 0
    local = contents(tmp_path / "local" / "out")
    assert export(models, f"s3://shards/corpus/{s3}", tmp_path / "folder" / "out") == 0
    assert_same(contents(tmp_path / "folder" / "out"), local)
    assert main(["verify", str(tmp_path / "folder" / "out"), "--sample", "4"]) == 0  # re-reads from S3
    # a glob over S3, split between two workers and merged
    out = tmp_path / "glob" / "out"
    for i in range(2):
        assert export(models, f"s3://shards/corpus/*.parquet{s3}", out, "--num-workers", 2, "--worker-index", i) == 0
    assert main(["merge", "--quiet", str(out)]) == 0
    assert_same(contents(out), local)
    capsys.readouterr()
    assert export(models, f"s3://shards/nothing/*.parquet{s3}", tmp_path / "none") == 3
    assert "s3://shards/nothing/*.parquet" in capsys.readouterr().err


def test_file_uri_gives_the_local_export(models, corpus, tmp_path):
    assert export(models, corpus["dir"], tmp_path / "local" / "out") == 0
    assert export(models, "file://" + corpus["dir"], tmp_path / "uri" / "out") == 0
    assert_same(contents(tmp_path / "uri" / "out"), contents(tmp_path / "local" / "out"))
