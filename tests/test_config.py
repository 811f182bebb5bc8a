"""Stage configs: YAML + flag overrides, checks on creation, and the CLI derived from them."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from nli_cot_hub.cli.derive import command
from nli_cot_hub.config import load_config, to_argv
from nli_cot_hub.data import DataError
from nli_cot_hub.generate import GenerateConfig, ReflectConfig


def derived_app(config_class):
    """An app with one derived command that hands back the config it was called with."""
    app = typer.Typer()
    seen = []
    command(app, "stage", config_class, seen.append)

    @app.command("other")  # a second command, so typer keeps the command name
    def other() -> None:
        pass

    def invoke(*argv):
        result = CliRunner().invoke(app, ["stage", *map(str, argv)])
        return result, (seen[-1] if seen and result.exit_code == 0 else None)

    return invoke


def test_yaml_then_flags(tmp_path):
    recipe = tmp_path / "generate.yaml"
    recipe.write_text("backend: local:embedded\nmax-new-tokens: 64\nlimit: 5\nconstrain: false\n")
    config = load_config(GenerateConfig, recipe, data="pairs.csv", limit=2)
    assert (config.backend, config.max_new_tokens, config.limit, config.constrain) == ("local:embedded", 64, 2, False)
    assert config.output == "cot.jsonl"  # untouched fields keep their defaults


def test_the_command_line_wins_over_the_file_and_the_file_over_defaults(tmp_path):
    recipe = tmp_path / "generate.yaml"
    recipe.write_text("data: from_file.csv\nconcurrency: 3\ntemperature: 0.7\n")
    invoke = derived_app(GenerateConfig)
    result, config = invoke("--config", recipe, "--concurrency", 5)
    assert result.exit_code == 0, result.output
    assert (config.data, config.concurrency, config.temperature) == ("from_file.csv", 5, 0.7)
    result, config = invoke("given.csv", "--config", recipe)
    assert config.data == "given.csv"


@pytest.mark.parametrize(
    "text, message, names_file",
    [
        ("no_such_option: 1\n", "unknown option 'no_such_option'", True),
        ("- a list\n", "a config is a mapping", True),
        ("key: [unclosed\n", "not valid YAML", True),
        ("json_mode: fancy\n", "--json-mode must be one of auto, schema, object, none", False),
        ("max_failed_share: 2\n", "--max-failed-share must be between 0 and 1", False),
        ("concurrency: many\n", "option 'concurrency' must be a int, not 'many'", True),
        ("constrain: 1\n", "option 'constrain' must be a bool, not 1", True),
    ],
)
def test_bad_config_files_name_the_file_and_the_option(tmp_path, text, message, names_file):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(DataError) as caught:
        load_config(GenerateConfig, recipe, data="x.csv")
    assert message in str(caught.value)
    assert (str(recipe) in str(caught.value)) == names_file


def test_a_missing_positional_is_named():
    with pytest.raises(DataError, match="missing RECORDS"):
        load_config(ReflectConfig)
    result, _ = derived_app(ReflectConfig)()
    assert result.exit_code != 0


def test_to_argv_reproduces_the_config_through_the_cli():
    config = GenerateConfig(
        data="pairs.csv",
        output="out.jsonl",
        backend="local:embedded",
        limit=3,
        constrain=False,
        progress=False,
        temperature=0.5,
        dataset_config="original",
    )
    argv = to_argv(config)
    assert argv[0] == "pairs.csv" and "--no-constrain" in argv and "--dataset-config" in argv
    result, parsed = derived_app(GenerateConfig)(*argv)
    assert result.exit_code == 0, result.output
    assert parsed == config


def test_renamed_flags_and_short_options():
    invoke = derived_app(ReflectConfig)
    result, config = invoke("cot.jsonl", "--all", "-o", "r.jsonl", "-b", "local:embedded")
    assert result.exit_code == 0, result.output
    assert (config.include_correct, config.output, config.backend) == (True, "r.jsonl", "local:embedded")
    assert to_argv(config) == ["cot.jsonl", "--output", "r.jsonl", "--backend", "local:embedded", "--all"]


def test_predict_engine_options_follow_the_flags(tmp_path):
    from nli_cot_hub.predict import PredictConfig

    invoke = derived_app(PredictConfig)
    data = tmp_path / "pairs.csv"
    _, default = invoke(data, "-o", tmp_path / "p.jsonl")
    result, whole_rows = invoke(
        data, "-o", tmp_path / "p.jsonl", "--no-share-prefix", "--cache", "static", "--no-compile-decode"
    )
    assert result.exit_code == 0, result.output
    assert default.engine_options()["share_prefix"] is True
    assert default.engine_options()["compile_decode"] is None  # the engine decides: compiled on a GPU
    assert whole_rows.engine_options() == {
        "dtype": "auto",
        "mode": "padded",
        "cache": "static",
        "compile_decode": False,
        "threads": None,
        "share_prefix": False,
    }
