"""Fixtures for the Hub-protocol server (``nli_cot_hub/hub_server.py``): ``hub_server_session`` (the running
server, session-scoped) and ``hub_server`` (per test: points ``HF_ENDPOINT`` and the values the libraries
cached from it at import at the server, sets ``HF_TOKEN``, disables Xet, and isolates the caches). For a
subprocess, pass ``env={**os.environ, **server.env()}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from nli_cot_hub.hub_server import HubServer


@contextlib.contextmanager
def use_hub_server(server: HubServer, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Iterator[HubServer]:
    """Point this process's huggingface_hub / datasets / transformers at `server`.

    The libraries read HF_ENDPOINT (and the Xet switch) once at import, so besides the environment this patches the
    module-level values they derived from it.
    """
    from huggingface_hub import constants

    for name, value in server.env(cache_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir / "hub"))
    # The module-level HfApi behind huggingface_hub's free functions (create_repo, upload_folder, … that
    # transformers and peft call) kept the endpoint it saw when huggingface_hub was first imported.
    from huggingface_hub import hf_api

    monkeypatch.setattr(hf_api.api, "endpoint", server.url)
    # transformers keeps an HfApi of its own, made on first use: an earlier Hub call in this process fixed its
    # endpoint, so it is made again here.
    with contextlib.suppress(ImportError):
        import transformers.utils.hub

        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None, raising=False)
    with contextlib.suppress(ImportError):
        import datasets.config

        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", server.url)
        monkeypatch.setattr(
            datasets.config, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        )
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache_dir / "datasets")
        monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False, raising=False)
    with contextlib.suppress(ImportError):
        import evaluate.config

        monkeypatch.setattr(evaluate.config, "HF_ENDPOINT", server.url)
        monkeypatch.setattr(evaluate.config, "HF_LIST_ENDPOINT", server.url + "/api/spaces?filter={type}")
        monkeypatch.setattr(
            evaluate.config, "HUB_EVALUATE_URL", server.url + "/spaces/{path}/resolve/{revision}/{name}"
        )
    yield server


@pytest.fixture(scope="session")
def hub_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The Hub-protocol server, started once per test session."""
    server = HubServer(root=tmp_path_factory.mktemp("hub_server")).start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(
    hub_server_session: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> Iterator[HubServer]:
    """The running server, with HF_ENDPOINT/HF_TOKEN and the libraries pointed at it for this test.

    Use unique repo names per test (the server lives for the whole session). ``hub_server.env(cache)`` gives the
    variables for a subprocess.
    """
    cache_dir = tmp_path_factory.mktemp("hf_cache")
    with use_hub_server(hub_server_session, monkeypatch, cache_dir):
        yield hub_server_session
