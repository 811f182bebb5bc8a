"""A typer command from a stage config: one option per field, ``--config FILE`` for a YAML of them.

A flag given on the command line wins over the YAML file, which wins over the field's default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Annotated, Any, Optional

import typer

from nli_cot_hub.config import field_types, flag_of, load_config, shown_order

CONFIG_HELP = "YAML file of this command's options (field names as keys); flags given here override it."


def _default(field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return None


def _parameter(field, annotation) -> inspect.Parameter:
    meta = field.metadata
    default = _default(field)
    if meta.get("positional"):
        info = typer.Argument(help=meta.get("help") or None, show_default=False)
        if default is None:  # required, but a --config file may supply it: checked after merging
            annotation = Optional[annotation]  # noqa: UP045 - built at run time for typer from any type
    else:
        flag = flag_of(field)
        boolean = annotation in (bool, Optional[bool])  # noqa: UP045 - compared with the resolved type hint
        if boolean and (meta.get("negatable") or default is True):
            decls = [f"{flag}/--no-{flag[2:]}"]
        else:
            decls = [flag]
        if meta.get("short"):
            decls.append(meta["short"])
        info = typer.Option(*decls, help=meta.get("help") or None, min=meta.get("min"), max=meta.get("max"))
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def _given_on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def command(
    app: typer.Typer,
    name: str,
    config_class: type,
    run: Callable[[Any], Any],
    *,
    help: str | None = None,
    **command_options: Any,
) -> Callable:
    """Register ``nli-cot NAME``: build ``config_class`` from flags (+ ``--config``) and call ``run`` on it."""
    types = field_types(config_class)
    parameters = [_parameter(field, types[field.name]) for field in shown_order(config_class)]
    parameters.append(
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option("--config", help=CONFIG_HELP)],
        )
    )
    parameters.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context))
    names = [field.name for field in fields(config_class)]

    def callback(ctx: typer.Context, **values: Any) -> Any:
        config_file = values.pop("config_file")
        if config_file:
            given = {key: values[key] for key in names if _given_on_command_line(ctx, key)}
            config = load_config(config_class, config_file, **given)
        else:
            config = load_config(config_class, **values)
        return run(config)

    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    callback.__name__ = f"{name.replace('-', '_')}_command"
    callback.__doc__ = help or inspect.getdoc(config_class)
    callback.config_class, callback.runner = config_class, run  # type: ignore[attr-defined]
    return app.command(name, **command_options)(callback)


def registered(config_class: type) -> tuple[list[str], Callable[[Any], Any]]:
    """The command path (e.g. ``["hub", "upload"]``) and the runner registered for ``config_class``."""
    from nli_cot_hub.cli import build_app

    def walk(typer_app: typer.Typer, prefix: list[str]):
        for entry in typer_app.registered_commands:
            if getattr(entry.callback, "config_class", None) is config_class:
                return [*prefix, entry.name], entry.callback.runner
        for group in typer_app.registered_groups:
            found = walk(group.typer_instance, [*prefix, group.name])
            if found:
                return found
        return None

    found = walk(build_app(), [])
    if found is None:
        raise LookupError(f"no nli-cot command runs {config_class.__name__}")
    return found


def stage_argv(config: Any) -> list[str]:
    """The ``nli-cot`` arguments that run ``config`` (after the program name)."""
    from nli_cot_hub.config import to_argv

    path, _ = registered(type(config))
    return [*path, *to_argv(config)]
