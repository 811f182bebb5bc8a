"""Checks on the paths a stage writes: never over one of its inputs, never where a file cannot go."""

from __future__ import annotations

import os
from pathlib import Path

from nli_cot_hub.data import DataError


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same existing file (through links, relative parts, ...)."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input_as_output(output: str | Path | None, inputs: list, option: str) -> None:
    """An output path must never be one of the command's inputs: writing it would destroy the input."""
    if output is None:
        return
    for source in inputs:
        if source is not None and (same_file(output, source) or Path(output).resolve() == Path(str(source)).resolve()):
            raise DataError(
                f"{option} {output} is an input of this command; writing it would destroy that input: "
                f"choose another path"
            )


def check_output_file(path: str | Path | None, option: str) -> None:
    """Fail before any work when a file output cannot be written there (a folder, or under a file)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{option} {path}: is a folder; give a file path")
    blocking = next((parent for parent in path.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise DataError(f"{option} {path}: {blocking} is a file, not a folder")
