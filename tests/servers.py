"""Real local servers for tests: start them on 127.0.0.1, wait until they answer, stop them.

* :func:`transformers_serve` — ``transformers serve`` (OpenAI-compatible) on a model folder;
* :func:`llama_cpp_server` — llama-cpp-python's server on a GGUF (real JSON-schema constrained output);
* :func:`tgi_server` — ``tests/tgi_server.py``, TGI's native protocol on a model folder;
* :func:`fault_proxy` — ``tests/fault_proxy.py`` in front of any of them: 429 + Retry-After, 500,
  dropped connections and stalls, on a schedule the test chooses.

Each is a context manager yielding a :class:`Server` (base URL, process, log file), for the generate and
predict tests alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Server:
    url: str  # e.g. http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(
        f"server at {url} did not come up in {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def _started(command: list[str], health_path: str, port: int, timeout_s: float, env: dict | None = None):
    log = Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
    handle = open(log, "wb")
    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + health_path, process, log, timeout_s)
        yield Server(url, process, log)
    finally:
        stop(process)
        handle.close()


@contextlib.contextmanager
def transformers_serve(model_dir: str, timeout_s: float = 180):
    """OpenAI-compatible ``transformers serve`` with the model preloaded; ignores ``response_format``."""
    port = free_port()
    command = [
        str(BIN / "transformers"),
        "serve",
        model_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--log-level",
        "warning",
    ]
    with _started(command, "/health", port, timeout_s, env={"OMP_NUM_THREADS": "1"}) as server:
        yield server


def llama_cpp_available() -> bool:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def llama_cpp_server(gguf: str, timeout_s: float = 120, n_ctx: int = 2048):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
        "--chat_format",
        "chatml",
    ]
    with _started(command, "/v1/models", port, timeout_s) as server:
        yield server


@contextlib.contextmanager
def tgi_server(model_dir: str, timeout_s: float = 120):
    port = free_port()
    command = [sys.executable, str(HERE / "tgi_server.py"), "--model", model_dir, "--port", str(port)]
    with _started(command, "/health", port, timeout_s, env={"OMP_NUM_THREADS": "1"}) as server:
        yield server


@contextlib.contextmanager
def fault_proxy(upstream: str, schedule: str, timeout_s: float = 30, stall_s: float = 30):
    """A proxy to ``upstream`` that answers request *n* per ``schedule``: a comma-separated list of
    ``ok``, ``429``, ``500``, ``drop`` (close the connection unanswered) and ``stall`` (answer
    nothing for ``stall_s`` seconds), cycled; e.g. ``"429,ok,500,drop,ok,stall"``."""
    port = free_port()
    command = [
        sys.executable,
        str(HERE / "fault_proxy.py"),
        "--upstream",
        upstream,
        "--port",
        str(port),
        "--schedule",
        schedule,
        "--stall-s",
        str(stall_s),
    ]
    with _started(command, "/__proxy/health", port, timeout_s) as server:
        yield server


def proxy_counts(proxy: Server) -> dict:
    import json

    with urllib.request.urlopen(proxy.url + "/__proxy/counts", timeout=5) as response:
        return json.loads(response.read())


# ---------------------------------------------------------------- session fixtures (imported by conftest)


@pytest.fixture(scope="session")
def openai_server(embedded_model_path):
    """``transformers serve`` on the embedded model, started once per test session."""
    with transformers_serve(embedded_model_path) as server:
        yield server


@pytest.fixture(scope="session")
def tgi_test_server(embedded_model_path):
    with tgi_server(embedded_model_path) as server:
        yield server


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's server on the embedded GGUF; skipped where it is not built (see Makefile)."""
    if not llama_cpp_available():
        pytest.skip("llama-cpp-python[server] is not installed (make setup builds it)")
    from nli_cot_hub.models import embedded_gguf_path

    with llama_cpp_server(str(embedded_gguf_path())) as server:
        yield server
