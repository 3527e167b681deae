"""`python -m experiment_runtime pod`: fetch code by presigned GET, run the node, PUT outputs, write the message.

A local HTTP server stands for S3's presigned URLs (GET serves the code tarball, PUT stores what it gets).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiment_runtime import pod

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "tests" / "fixtures" / "native_template"


class Bucket(http.server.BaseHTTPRequestHandler):
    objects: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802
        data = self.objects.get(self.path.split("?")[0])
        self.send_response(200 if data is not None else 403)
        self.end_headers()
        self.wfile.write(data or b"<Error>AccessDenied</Error>")

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        self.objects[self.path.split("?")[0]] = self.rfile.read(length)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bucket() -> Iterator[tuple[str, dict[str, bytes]]]:
    Bucket.objects = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bucket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Bucket.objects
    server.shutdown()


def run_pod(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / "termination-log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO), "KUBESCIENTIST_WORK_DIR": str(tmp_path / "work"),
           "KUBESCIENTIST_TERMINATION_LOG": str(log), "KUBESCIENTIST_KEEP_ROOT": "1"}
    proc = subprocess.run([sys.executable, "-m", "experiment_runtime", "pod", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc, log.read_text()


def test_a_node_runs_from_presigned_urls(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, objects = bucket
    tarball = pod.pack(TEMPLATE)
    objects["/code.tar.gz"] = tarball
    puts = [f"--put-url={name}={base}/out/{name}?X-Amz-Signature=s" for name in pod.ARTIFACTS]
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz?X-Amz-Signature=g", "--code-sha256",
                            hashlib.sha256(tarball).hexdigest(), "--config-json",
                            '{"seed": 3, "params": {"lr": 0.3}, "variant": null, "ablation": null}', "--deadline", "60",
                            *puts)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(message)
    assert report["status"] == "succeeded" and report["buggy"] is False and len(message.encode()) <= 4096
    assert set(report["metrics"]) == {"linear", "shifted"}
    assert {f"/out/{n}" for n in pod.ARTIFACTS} <= set(objects)
    result = json.loads(objects["/out/result.json"])
    assert result["status"] == "succeeded" and result["plots"] == ["fit.png"]
    assert "val_loss" in json.loads(objects["/out/metrics.json"])["datasets"]["linear"]
    with tarfile.open(fileobj=io.BytesIO(objects["/out/plots.tar.gz"])) as tar:
        assert tar.getnames() == ["fit.png"]


def test_a_crashing_program_is_a_buggy_result_not_a_pod_failure(bucket: tuple[str, dict[str, bytes]],
                                                                  tmp_path: Path) -> None:
    base, objects = bucket
    objects["/code.tar.gz"] = pod.pack(TEMPLATE)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz", "--config-json",
                            '{"seed": 0, "params": {"fail": true}}', f"--put-url=stderr.txt={base}/out/stderr.txt")
    assert proc.returncode == 0
    report = json.loads(message)
    assert report["buggy"] is True and "params.fail is set" in report["buggyReason"]
    assert b"RuntimeError" in objects["/out/stderr.txt"]


def test_code_that_cannot_be_fetched_is_an_error_message(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, objects = bucket
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/missing.tar.gz?X-Amz-Signature=secret",
                            "--config-json", "{}")
    assert proc.returncode == 1
    report = json.loads(message)
    assert report["status"] == "error" and "HTTP 403" in report["message"]
    assert "secret" not in report["message"]  # the URL (and its signature) is never echoed


def test_a_tarball_with_the_wrong_hash_is_refused(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, objects = bucket
    objects["/code.tar.gz"] = pod.pack(TEMPLATE)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz", "--code-sha256", "0" * 64,
                            "--config-json", "{}")
    assert proc.returncode == 1 and "does not match" in json.loads(message)["message"]


def test_unknown_artefact_names_are_refused(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, _ = bucket
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/x", "--config-json", "{}",
                            f"--put-url=secrets.txt={base}/x")
    assert proc.returncode == 1 and "unknown artefact names" in json.loads(message)["message"]


def test_failed_uploads_are_named_in_the_message(tmp_path: Path) -> None:
    from experiment_runtime.result import NodeResult

    result = NodeResult(status="succeeded", buggy=False, buggy_reason=None, exit_code=0, signal=None,
                        duration_seconds=1.0, overhead_seconds=0.1, started_at="", finished_at="", code_hash="h",
                        stdout_bytes=0, stderr_bytes=0, stdout_truncated=False, stderr_truncated=False,
                        peak_disk_bytes=0, max_rss_bytes=0, cpu_seconds=0.0, plots=[], metrics=None)
    assert json.loads(pod.message_with(result, ["metrics.json"]))["artifactErrors"] == ["metrics.json"]
    assert "artifactErrors" not in json.loads(pod.message_with(result, []))


def test_pack_is_deterministic_and_unpack_refuses_escapes(tmp_path: Path) -> None:
    assert pod.pack(TEMPLATE) == pod.pack(TEMPLATE)
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(pod.TransferError):
        pod.unpack(evil.getvalue(), tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def fetch_dataset(dest: Path, max_bytes: int, objects: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiment_runtime", "fetch-dataset", "--dest", str(dest),
                           "--max-bytes", str(max_bytes), "--objects-json", json.dumps(objects)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)


def test_an_s3_dataset_is_fetched_from_presigned_urls(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    url, objects = bucket
    objects["/data/cifar/train/a.bin"] = b"abc"
    objects["/data/cifar/labels.txt"] = b"cat\ndog\n"
    listing = [{"path": "train/a.bin", "size": 3, "url": f"{url}/data/cifar/train/a.bin?sig"},
               {"path": "labels.txt", "size": 8, "url": f"{url}/data/cifar/labels.txt?sig"}]
    done = fetch_dataset(tmp_path / "ds", 100, listing)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ds" / "train" / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "ds" / "labels.txt").read_text() == "cat\ndog\n"


@pytest.mark.parametrize("listing, message", [
    ([{"path": "a", "size": 200, "url": "http://127.0.0.1:9/a"}], "holds 200 bytes, more than its maxSize of 100"),
    ([{"path": "../escape", "size": 1, "url": "http://127.0.0.1:9/a"}], "would leave the dataset folder"),
    ([{"path": "/etc/passwd", "size": 1, "url": "http://127.0.0.1:9/a"}], "would leave the dataset folder"),
])
def test_a_dataset_too_large_or_escaping_is_refused_before_any_fetch(tmp_path: Path, listing: list[dict[str, object]],
                                                                     message: str) -> None:
    done = fetch_dataset(tmp_path / "ds", 100, listing)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ds").exists()


def test_a_dataset_object_that_cannot_be_fetched_is_named(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    url, _ = bucket
    done = fetch_dataset(tmp_path / "ds", 100, [{"path": "x/y.bin", "size": 3, "url": f"{url}/missing?sig"}])
    assert done.returncode == 1 and "dataset file x/y.bin" in done.stderr


def test_a_requirement_the_image_lacks_is_a_configuration_error(bucket: tuple[str, dict[str, bytes]],
                                                                 tmp_path: Path) -> None:
    base, objects = bucket
    code = tmp_path / "template"
    shutil.copytree(TEMPLATE, code)
    (code / "requirements.txt").write_text("pyyaml\nkubescientist-absent-4711>=2  # the model zoo\n")
    objects["/code.tar.gz"] = pod.pack(code)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz", "--config-json", '{"seed": 0}',
                            "--requirement", "psutil>=999", f"--put-url=result.json={base}/out/result.json")
    assert proc.returncode == 1
    report = json.loads(message)
    assert report["status"] == "error" and report["configuration"] is True
    text = report["message"]
    assert "kubescientist-absent-4711>=2 (not installed)" in text and "psutil>=999 (installed: " in text
    assert "pyyaml" not in text.split("build an image")[0]  # what the image has is not named
    assert "RUN pip install 'kubescientist-absent-4711>=2' 'psutil>=999'" in text and "spec.runtime.image" in text
    assert "/out/result.json" not in objects  # the program never ran


def test_requirements_the_image_holds_let_the_node_run(bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, objects = bucket
    code = tmp_path / "template"
    shutil.copytree(TEMPLATE, code)
    (code / "requirements.txt").write_text("pyyaml>=5\n")
    objects["/code.tar.gz"] = pod.pack(code)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz", "--config-json", '{"seed": 0}',
                            "--requirement", "psutil")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(message)["status"] == "succeeded"


def test_the_pod_runtime_takes_its_disk_quota_and_shm_from_the_node_jobs_arguments(
        bucket: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    # The arguments come from the node Job the operator builds for spec.runtime.ephemeralStorage and shmSize.
    from test_manifests import job, spec

    from kubescientist.adapters.kube import node_environment
    from kubescientist.adapters.kube.config import Settings

    run = spec(runtime={"ephemeralStorage": "16Mi", "shmSize": "8Mi"})
    args = node_environment.apply(job(run), run, Settings(), {})["spec"]["template"]["spec"]["containers"][0]["args"]
    sizes = [arg for flag in ("--max-disk-bytes", "--shm-bytes") for arg in (flag, args[args.index(flag) + 1])]
    assert sizes == ["--max-disk-bytes", str(16 << 20), "--shm-bytes", str(8 << 20)]
    code = tmp_path / "fill"
    shutil.copytree(TEMPLATE, code)
    (code / "train.py").write_text(
        "import os, time\n"
        "st = os.statvfs('/dev/shm')\n"
        "print('shm', st.f_blocks * st.f_frsize, flush=True)\n"
        "with open('fill.bin', 'wb') as f:\n"
        "    for _ in range(24):\n"
        "        f.write(os.urandom(1 << 20)); f.flush()\n"
        "time.sleep(3)\n")
    base, objects = bucket
    objects["/code.tar.gz"] = pod.pack(code)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz", "--config-json", '{"seed": 0}',
                            "--deadline", "30", *sizes, f"--put-url=stdout.txt={base}/out/stdout.txt",
                            f"--put-url=result.json={base}/out/result.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(message)
    assert report["status"] == "killed"
    assert report["buggyReason"] == f"wrote more than {16 << 20} bytes to disk (work dir and /tmp)"
    if json.loads(objects["/out/result.json"])["protections"]["namespaces"]:  # else the pod's own /dev/shm
        assert f"shm {8 << 20}" in objects["/out/stdout.txt"].decode()
