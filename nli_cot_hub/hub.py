"""Thin helpers over huggingface_hub: the token from the environment and the endpoint HF_ENDPOINT names.

huggingface_hub reads ``HF_ENDPOINT`` once, at import; these helpers read it when called, so a process that sets
it later (or a test pointing at a local Hub server) still reaches the right place.
"""

from __future__ import annotations

import os


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), else the token saved by ``hf auth login``."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def hub_api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token or hub_token())
