#!/usr/bin/env python
"""Build the CoT NLI data set (configs original / reflected / combined) and write and/or push it.

The same command as ``nli-cot build``; run ``python dataset_scripts/build_cot_dataset.py --help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from nli_cot_hub.build import BuildConfig, run_build  # noqa: E402
from nli_cot_hub.cli.build import show_build  # noqa: E402
from nli_cot_hub.cli.common import error_boundary  # noqa: E402
from nli_cot_hub.cli.derive import command  # noqa: E402


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    callback = command(app, "build", BuildConfig, lambda config: show_build(run_build(config)))
    app.registered_commands[0].callback = error_boundary(callback)  # one command: the script is `nli-cot build`
    app()


if __name__ == "__main__":
    main()
