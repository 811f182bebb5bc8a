"""The error boundary every command runs inside.

Exit codes of every command: 0 success; 1 the run failed (more failed records than
``--max-failed-share`` allows, a backend or Hub refusal, an unexpected error); 2 bad input or usage
(a file, row, field or option that cannot be used). Expected failures print one line
``error: ...`` on stderr; ``nli-cot --debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys

import typer

try:  # typer >= 0.25 ships its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import ClickException

from nli_cot_hub.config import RunFailed
from nli_cot_hub.data import DataError
from nli_cot_hub.redact import redact

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
