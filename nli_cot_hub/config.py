"""Typed stage configs: one dataclass per stage, read from a YAML file and overridden by flags.

Every stage is ``run_<stage>(Config) -> Result``. A config field is declared with :func:`option`; its
metadata (help, flag, bounds, choices) is all the command line needs, so ``nli-cot <stage>`` is derived
from the config (:mod:`nli_cot_hub.cli.derive`) and a YAML file of the same field names configures any
stage: ``nli-cot generate --config generate.yaml --limit 10``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    positional: bool = False,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    negatable: bool = False,
) -> Any:
    """A config field. ``flag`` overrides the ``--field-name`` spelling; ``negatable`` adds ``--no-field``."""
    metadata = {
        "help": help,
        "flag": flag,
        "short": short,
        "positional": positional,
        "choices": choices,
        "min": min,
        "max": max,
        "negatable": negatable,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def stage_config(cls: type[C]) -> type[C]:
    """The decorator of a stage config: a keyword-only dataclass whose choices are checked on creation."""
    original_post_init = getattr(cls, "__post_init__", None)

    def __post_init__(self) -> None:
        check_choices(self)
        if original_post_init is not None:
            original_post_init(self)

    cls.__post_init__ = __post_init__  # before dataclass(): its __init__ calls only a hook present then
    return dataclass(kw_only=True)(cls)


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def check_choices(config: Any) -> None:
    from nli_cot_hub.data import DataError

    for field in fields(config):
        value = getattr(config, field.name)
        choices = field.metadata.get("choices")
        if choices and value is not None and str(value) not in choices:
            raise DataError(f"{flag_of(field)} must be one of {', '.join(choices)}, not {value!r}")
        low, high = field.metadata.get("min"), field.metadata.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"
                raise DataError(f"{flag_of(field)} must be {bounds}, not {value!r}")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def read_yaml_config(path: str | Path, cls: type) -> dict[str, Any]:
    """The fields a YAML file sets (``field_name`` or ``field-name`` keys), checked against ``cls``."""
    import yaml

    from nli_cot_hub.data import DataError

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: a config is a mapping of option names to values, not a {type(data).__name__}")
    known = {field.name for field in fields(cls)}
    hints = field_types(cls)
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise DataError(f"{path}: unknown option {key!r} (known: {', '.join(sorted(known))})")
        values[name] = _checked(value, hints[name], path, key)
    return values


def _checked(value: Any, hint: Any, path: Path, key: str) -> Any:
    """A YAML value of the field's type (an int may stand for a float; a single value for a list)."""
    from nli_cot_hub.data import DataError

    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    wanted = [arg for arg in typing.get_args(hint) if arg is not type(None)] if union else [hint]
    if value is None and union and type(None) in typing.get_args(hint):
        return value
    kind = typing.get_origin(wanted[0]) or wanted[0]
    if kind is list:
        return [
            _checked(item, typing.get_args(wanted[0])[0], path, key)
            for item in (value if isinstance(value, list) else [value])
        ]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, bool, str) and (type(value) is not kind):
        raise DataError(f"{path}: option {key!r} must be a {kind.__name__}, not {value!r}")
    return value


def load_config(cls: type[C], path: str | Path | None = None, /, **overrides: Any) -> C:
    """``cls`` from the YAML file at ``path`` (if any), then ``overrides`` on top.

    ``cls`` and ``path`` are positional-only, so a config may have fields of those names."""
    from nli_cot_hub.data import DataError

    values = read_yaml_config(path, cls) if path else {}
    values.update(overrides)
    missing = [
        f.name.upper() if f.metadata.get("positional") else flag_of(f)
        for f in fields(cls)
        if f.default is MISSING and f.default_factory is MISSING and values.get(f.name) is None
    ]
    if missing:
        raise DataError(f"missing {', '.join(missing)}" + (f" (not given, not set in {path})" if path else ""))
    return cls(**values)


def shown_order(config_class: type) -> list[dataclasses.Field]:
    """The config's own fields first (what the stage is about), then those of its shared option groups."""
    by_name = {f.name: f for f in fields(config_class)}
    own = [by_name[name] for name in config_class.__dict__.get("__annotations__", {}) if name in by_name]
    return own + [f for f in by_name.values() if f not in own]


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # 1800, not 1800.0: what a user types
    return str(value)


def to_argv(config: Any) -> list[str]:
    """The flags that reproduce ``config`` from its defaults (what a user would type)."""
    argv: list[str] = []
    positional: list[str] = []
    for field in shown_order(type(config)):
        value = getattr(config, field.name)
        default = (
            field.default
            if field.default is not MISSING
            else (field.default_factory() if field.default_factory is not MISSING else MISSING)
        )
        if field.metadata.get("positional"):
            positional.extend(_shown(item) for item in (value if isinstance(value, list) else [value]))
            continue
        if value == default:
            continue
        flag = flag_of(field)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            for item in value:
                argv += [flag, _shown(item)]
        elif value is not None:
            argv += [flag, _shown(value)]
    return positional + argv


class RunFailed(RuntimeError):
    """The stage ran, but its result must not pass for a success (the CLI exits with code 1)."""


def failed_share_problem(
    stage: str, failed: int, total: int, first_error: str | None, max_share: float, kept_in: str | Path
) -> str | None:
    """Why a run with ``failed`` of ``total`` failed records is a failure, or None when it is not."""
    if total == 0 or failed / total <= max_share:
        return None
    return (
        f"{stage}: {failed} of {total} records failed ({failed / total:.0%} > --max-failed-share "
        f"{max_share:g}); first error: {first_error or 'unknown'}; every record is kept in {kept_in}"
    )


def raise_if_failed(result: Any) -> Any:
    """``result`` itself, unless its ``problem`` says the run failed: then :class:`RunFailed`."""
    problem = getattr(result, "problem", None)
    if problem:
        raise RunFailed(problem)
    return result
