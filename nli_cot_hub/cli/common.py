"""Options and error handling shared by the stage commands.

Exit codes of every command: 0 success; 1 the run failed (more failed records than
``--max-failed-share`` allows, a backend or Hub refusal, an unexpected error); 2 bad input or usage
(a file, row, field or option that cannot be used). Expected failures print one line
``error: ...`` on stderr; ``nli-cot --debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.25 ships its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import ClickException

from nli_cot_hub.config import RunFailed, failed_share_problem
from nli_cot_hub.data import Columns, DataError, LabelMapping, parse_label_map
from nli_cot_hub.paths import check_output_file, refuse_input_as_output, same_file  # noqa: F401
from nli_cot_hub.redact import redact

PremiseCol = Annotated[str, typer.Option("--premise-col", help="Column holding the premise.")]
HypothesisCol = Annotated[str, typer.Option("--hypothesis-col", help="Column holding the hypothesis.")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Column holding the label.")]
IdCol = Annotated[str | None, typer.Option("--id-col", help="Column holding a row id (default: row index).")]
LabelScheme = Annotated[
    str,
    typer.Option(
        "--labels",
        help="Integer label scheme: binary (1 = entailment), inverted (0 = entailment), "
        "glue3 (0 entailment / 1 neutral / 2 contradiction).",
    ),
]
ThreeClass = Annotated[
    str | None, typer.Option("--three-class", help="What neutral becomes: strict (-> 0) or non-contradiction (-> 1).")
]
LabelMapSpec = Annotated[
    str | None, typer.Option("--label-map", help="Explicit raw=label pairs, e.g. 'yes=1,no=0'; checked first.")
]
Config = Annotated[str | None, typer.Option("--config", help="Data set config (folder or Hub repo).")]
Split = Annotated[str, typer.Option("--split", help="Split to read from a data set folder or Hub repo.")]

DEFAULT_MAX_FAILED_SHARE = 0.5
MaxFailedShare = Annotated[
    float,
    typer.Option(
        "--max-failed-share",
        min=0.0,
        max=1.0,
        help="Exit with code 1 when more than this share of this run's records failed (every record is kept).",
    ),
]

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
MESSAGE_LIMIT = 600
DEBUG_ENV = "NLI_COT_DEBUG"


OWN_MODULES = {"nli_cot_hub"}
REMOTE_MODULES = {"huggingface_hub", "httpx", "httpx2", "requests", "openai", "mistralai"}
# Errors that mean "this input cannot be used": exit code 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (DataError, OSError, ValueError, KeyError)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """A message for ``error`` on one line, secrets masked: what the user needs, not a traceback."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        target = f"{error.filename} -> {error.filename2}" if error.filename2 else str(error.filename)
        text = f"{target}: {error.strerror}"
    else:
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(text.split())
    if not text:
        text = type(error).__name__
    elif not isinstance(error, (OSError, ValueError)) and type(error).__module__.split(".")[0] not in OWN_MODULES:
        text = f"{type(error).__name__}: {text}"  # a library's error: its type says where it came from
    text = redact(text) or text  # before cutting, so no part of a secret survives the cut
    return text[:MESSAGE_LIMIT] + " ..." if len(text) > MESSAGE_LIMIT else text


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, RunFailed):
        return EXIT_FAILED
    if isinstance(error, (ConnectionError, TimeoutError)):
        return EXIT_FAILED
    if type(error).__module__.split(".")[0] in REMOTE_MODULES:  # a server refused or failed: not the input
        return EXIT_FAILED
    return EXIT_BAD_INPUT if isinstance(error, INPUT_ERRORS) else EXIT_FAILED


def unexpected(error: BaseException) -> bool:
    """An error no check of ours foresaw (likely a bug): worth its traceback."""
    foreseen = (RunFailed, ConnectionError, TimeoutError, *INPUT_ERRORS)
    return not isinstance(error, foreseen) and type(error).__module__.split(".")[0] not in REMOTE_MODULES | OWN_MODULES


def fail(error: BaseException) -> typer.Exit:
    hint = " (nli-cot --debug shows the traceback)" if unexpected(error) else ""
    print(f"error: {one_line(error)}{hint}", file=sys.stderr)
    return typer.Exit(exit_code_of(error))


def error_boundary(function):
    """Every command runs inside this: an exception becomes one line on stderr and exit code 1 or 2.

    ``typer.Exit``/click errors pass through; Ctrl-C too (click prints "Aborted!").
    """
    if getattr(function, "__error_boundary__", False):
        return function

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            if isinstance(error, ClickException) or debug_enabled():
                raise
            raise fail(error) from None

    wrapper.__error_boundary__ = True  # type: ignore[attr-defined]
    return wrapper


# The stage modules decorate their commands with this name; build_app wraps every command anyway.
clean_errors = error_boundary


def columns_and_labels(
    premise_col: str,
    hypothesis_col: str,
    label_col: str,
    id_col: str | None,
    labels: str,
    three_class: str | None,
    label_map: str | None,
) -> tuple[Columns, LabelMapping]:
    try:
        mapping = LabelMapping(scheme=labels, three_class=three_class, custom=parse_label_map(label_map))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return Columns(premise_col, hypothesis_col, label_col, id_col), mapping


def check_failed_share(
    stage: str, failed: int, total: int, first_error: str | None, max_share: float, kept_in: str | Path
) -> None:
    """Raise :class:`RunFailed` when more than ``max_share`` of the ``total`` records of this run failed."""
    problem = failed_share_problem(stage, failed, total, first_error, max_share, kept_in)
    if problem:
        raise RunFailed(problem)
