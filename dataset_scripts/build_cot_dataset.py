#!/usr/bin/env python
"""Build the CoT NLI data set (configs original / reflected / combined) and write and/or push it.

The same command as ``nli-cot build``; run ``python dataset_scripts/build_cot_dataset.py --help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from nli_cot_hub.cli.build import build  # noqa: E402


def main() -> None:
    typer.run(build)


if __name__ == "__main__":
    main()
