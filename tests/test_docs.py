"""The README's commands work as written: marked offline blocks run (tests/readme_run.py has the convention),
and every other ``nli-cot`` line parses against the real CLI."""

from __future__ import annotations

import shlex

import pytest

from tests.readme_run import README, block_commands, marked_blocks, unmarked_cli_commands

BLOCKS = marked_blocks()
SHELL_OPERATORS = {"|", "||", "&&", "&", ";", ">", ">>", "<"}


def test_block_commands_join_continuations_and_drop_comments():
    body = (
        "# a comment\nnli-cot data check a.csv   # inline\n\npython train.py --config x.yaml \\\n    --max_steps 3\n"
    )
    assert block_commands(body) == [
        "nli-cot data check a.csv   # inline",
        "python train.py --config x.yaml --max_steps 3",
    ]


def test_marks_are_found_with_their_kind():
    text = (
        "intro\n<!-- docs-test -->\n```bash\nnli-cot data check a.csv\n```\n\n```bash\nnli-cot generate x\n```\n"
        "<!-- docs-test: demo -->\n```bash\nmake demo DEMO_ARGS=--quick\n```\n"
    )
    blocks = marked_blocks(text)
    assert [(b.kind, b.commands) for b in blocks] == [
        ("run", ["nli-cot data check a.csv"]),
        ("demo", ["make demo DEMO_ARGS=--quick"]),
    ]
    assert blocks[0].line == 3 and blocks[1].line == 11  # the opening fence
    assert unmarked_cli_commands(text) == [(7, "nli-cot generate x")]


def test_readme_documents_the_convention_and_marks_blocks():
    text = README.read_text(encoding="utf-8")
    assert "<!-- docs-test -->" in text and "docs-test: demo" in text
    assert len(BLOCKS) >= 3


def cli_arguments(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    for position, word in enumerate(words):
        if word in SHELL_OPERATORS:
            return words[1:position]
    return words[1:]


@pytest.mark.parametrize(
    "line,command", unmarked_cli_commands(), ids=[f"README.md:{n}" for n, _ in unmarked_cli_commands()]
)
def test_real_use_commands_parse(line, command):
    """Commands that need an API key, a GPU or the real Hub are not run, but their subcommand and options must
    exist."""
    import typer

    # typer ships its own copy of click; its commands raise that copy's exceptions.
    from typer._click.exceptions import UsageError
    from typer.core import TyperGroup

    from nli_cot_hub.cli import app, build_app

    if not app.registered_commands:
        build_app()
    command_object = typer.main.get_command(app)
    words = cli_arguments(command)
    context = command_object.make_context("nli-cot", [], resilient_parsing=True)
    while isinstance(command_object, TyperGroup):
        assert words, f"README.md:{line}: `{command}` names no subcommand"
        name, words = words[0], words[1:]
        command_object = command_object.get_command(context, name)
        assert command_object is not None, f"README.md:{line}: `{command}`: no command {name!r}"
    try:
        command_object.make_context(name, words, parent=context)
    except UsageError as error:
        pytest.fail(f"README.md:{line}: `{command}`: {error.format_message()}")


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs(readme_run, block):
    results = readme_run.run(block)
    for result in results:
        assert result.returncode == 0, (
            f"{block.name}: `{result.command}` exited {result.returncode}:\n{result.output[-4000:]}"
        )
    assert [r.command for r in results] == block.commands
