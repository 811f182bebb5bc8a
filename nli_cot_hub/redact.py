"""Keep secrets out of every message the process prints or stores.

A server's error body may echo the API key it was sent; whatever text leaves the process (an error
line, a record's ``error`` field) goes through :func:`redact` first.
"""

from __future__ import annotations

import os
import re

# Environment variables whose values are secrets: the known ones, and any name that says so.
KNOWN_SECRETS = ("MISTRAL_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_MIN_SECRET_CHARS = 6  # shorter values ("1", "true") would blank out ordinary words
MASK = "***"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The secret values set in the environment, longest first (so a key containing another is masked whole)."""
    environ = os.environ if environ is None else environ
    values = {
        value.strip()
        for name, value in environ.items()
        if (name in KNOWN_SECRETS or _SECRET_NAME.search(name)) and len(value.strip()) >= _MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str | None, environ: dict[str, str] | None = None) -> str | None:
    """``text`` with every secret of the environment replaced by ``***``."""
    if not text:
        return text
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return text
