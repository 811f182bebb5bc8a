"""Shared fixtures: the real data in ../shared/data and the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hub_server import hub_server, hub_server_session  # noqa: F401  (fixtures)
from tests.readme_run import readme_run  # noqa: F401  (fixture: README commands, run once per session)
from tests.servers import llama_server, openai_server, tgi_test_server  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NLI_COT_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.fail(f"real test data missing: {path} (CI lays ../shared beside the clone)")
    return path


@pytest.fixture(scope="session")
def embedded_model_path() -> str:
    from nli_cot_hub.models import embedded_model_dir

    return str(embedded_model_dir())


@pytest.fixture(scope="session")
def tiny_mistral_path(tmp_path_factory) -> str:
    """Mistral-7B-v0.3's architecture (tiny widths, random weights) and real tokenizer, with no chat
    template, as the base model ships."""
    from tests.tiny_mistral import build_tiny_mistral

    return build_tiny_mistral(tmp_path_factory.mktemp("tiny-mistral"))


@pytest.fixture
def repeated_while_compiling(monkeypatch) -> list[bool]:
    """transformers' ``repeat_kv`` (keys and values copied to every query head) patched to record, for each call,
    whether torch.compile was tracing it."""
    import torch
    from transformers.integrations import sdpa_attention

    calls: list[bool] = []
    repeat_kv = sdpa_attention.repeat_kv

    def recording_repeat_kv(hidden_states, groups):
        calls.append(torch.compiler.is_compiling())
        return repeat_kv(hidden_states, groups)

    monkeypatch.setattr(sdpa_attention, "repeat_kv", recording_repeat_kv)
    return calls
