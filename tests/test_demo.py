"""``nli-cot demo``: the plan of commands (fast), and the README's demo command run once per session (the
``readme_run`` fixture of tests/readme_run.py, shared with the docs test) with everything it must leave."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nli_cot_hub.demo import DemoPlan, Layout, command_line, commands_script, plan_steps
from tests.conftest import SHARED_DATA

STAGES = ["generate", "reflect", "judge", "build", "lengths", "train", "predict", "predict (base)", "evaluate", "card"]


def parses(argv: list[str]) -> None:
    """The command line is accepted by the real CLI (subcommand and every option exist, values convert)."""
    import typer
    from typer.core import TyperGroup

    from nli_cot_hub.cli import app, build_app

    if not app.registered_commands:
        build_app()
    command, words = typer.main.get_command(app), list(argv)
    context = command.make_context("nli-cot", [], resilient_parsing=True)
    while isinstance(command, TyperGroup):
        name, words = words[0], words[1:]
        command = command.get_command(context, name)
        assert command is not None, f"no command {name!r} in {argv}"
    command.make_context(name, words, parent=context)


def test_plan_runs_every_stage_in_order(tmp_path):
    steps = plan_steps(DemoPlan(), Layout(tmp_path / "out"), SHARED_DATA)
    assert [step.name for step in steps] == STAGES
    for step in steps:
        parses(step.argv)
    script = commands_script(steps)
    assert all(command_line(step.argv) in script for step in steps)
    by_name = {step.name: step.argv for step in steps}
    assert by_name["generate"][by_name["generate"].index("--limit") + 1] == "50"
    assert by_name["predict"][by_name["predict"].index("--limit") + 1] == "50"
    assert "--adapter" in by_name["predict"] and "--adapter" not in by_name["predict (base)"]


def test_quick_plan_is_smaller_and_hub_steps_come_with_a_server(tmp_path):
    full, quick = DemoPlan(), DemoPlan().quick()
    assert quick.rows < full.rows and quick.train_steps < full.train_steps and quick.eval_rows < full.eval_rows
    steps = plan_steps(
        quick, Layout(tmp_path / "out"), SHARED_DATA, hub_env={"HF_ENDPOINT": "http://127.0.0.1:1"}, hub_user="tester"
    )
    hub = [step for step in steps if step.argv[0] == "hub"]
    assert [step.name for step in hub] == [
        "hub upload data set",
        "hub download data set",
        "hub upload adapter",
        "hub upload results",
    ]
    assert all(step.subprocess_env["HF_ENDPOINT"] == "http://127.0.0.1:1" for step in hub)
    for step in hub:
        parses(step.argv)
    names = [step.name for step in steps]
    assert names.index("hub upload data set") == names.index("build") + 1
    assert names.index("hub upload adapter") > names.index("card")


def test_missing_data_is_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "demo",
            "--quick",
            "--data-root",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("error: ") and "trial_jd0g.csv" in result.stderr and "Traceback" not in result.stderr
    )


# ---------------------------------------------------------------- the README's demo, run once


@pytest.fixture(scope="module")
def demo(readme_run):
    block = readme_run.demo_block()
    results = readme_run.run(block)
    for result in results:
        assert result.returncode == 0, f"`{result.command}` exited {result.returncode}:\n{result.output[-4000:]}"
    output = readme_run.checkout / "demo_output"
    summary = json.loads((output / "demo_summary.json").read_text())
    return output, summary, results[-1].output


@pytest.mark.slow
@pytest.mark.server
def test_demo_prints_commands_artifacts_and_metrics(demo):
    output, summary, printed = demo
    rows = summary["plan"]["eval_rows"]
    assert "$ nli-cot generate" in printed and "$ nli-cot train --config" in printed
    assert "artifacts" in printed and f"evaluation on {rows} coursework dev rows" in printed
    for name in ("adapter", "base"):
        assert f"│ {name}" in printed
    assert [s["name"] for s in summary["steps"] if not s["name"].startswith("hub ")] == STAGES
    script = (output / "commands.sh").read_text()
    assert script.count("\nnli-cot ") == len(summary["steps"])


@pytest.mark.slow
@pytest.mark.server
def test_demo_cot_stores_and_data_set(demo):
    from datasets import load_dataset

    from nli_cot_hub.store import read_records

    output, summary, _ = demo
    plan = summary["plan"]
    generated = read_records(output / "cot" / "generated.jsonl")
    assert [r.id for r in generated] == [str(i) for i in range(plan["rows"])]
    assert all(r.model == "embedded" and r.usage.completion_tokens > 0 for r in generated)
    assert all(r.raw_output or r.thought_process for r in generated)  # a failure keeps the model's text
    # Decoded to the CoT schema, every generated answer parses (a label, and a thought unless cut short).
    assert all(r.constrained and r.status != "failed" and r.predicted_label in (0, 1) for r in generated)
    assert summary["parsing"]["generate"] == {
        "records": plan["rows"],
        "parsed": plan["rows"],
        "failed": 0,
        "constrained": plan["rows"],
    }
    reflected = read_records(output / "cot" / "reflected.jsonl")
    assert 0 < len(reflected) <= plan["reflect_rows"] and all(r.source == "reflected" for r in reflected)
    assert len(read_records(output / "cot" / "judged.jsonl")) <= plan["judge_rows"]

    card = (output / "dataset" / "README.md").read_text()
    assert card.startswith("---") and "configs:" in card
    combined = load_dataset(str(output / "dataset"), "combined")
    assert {"train", "validation"} <= set(combined) and len(combined["train"]) > 20
    assert {"prompt", "completion"} <= set(combined["train"].column_names)
    # The copy fetched back from the Hub-protocol server is the same data set.
    for path in (output / "dataset").rglob("*"):
        if path.is_file():
            assert (
                output / "hub_download" / "dataset" / path.relative_to(output / "dataset")
            ).read_bytes() == path.read_bytes()
    assert (output / "lengths.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.server
def test_demo_adapter_predictions_submission_report(demo):
    from nli_cot_hub.store import read_records

    output, summary, _ = demo
    rows = summary["plan"]["eval_rows"]
    adapter = output / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and "/" in config["base_model_name_or_path"]  # the public id
    assert summary["training"]["global_steps"] == summary["plan"]["train_steps"]
    card = (adapter / "README.md").read_text()
    assert "model-index" in card and "accuracy" in card and "comp34812-nli-dev" in card

    for name in ("adapter", "base"):
        records = read_records(output / "predictions" / f"{name}.jsonl")
        assert len(records) == rows and all(r.label in (0, 1) for r in records)
        assert all(r.constrained and r.predicted_label in (0, 1) for r in records)
    with open(output / "submission.csv", newline="") as handle:
        submission = list(csv.reader(handle))
    assert submission[0] == ["prediction"] and len(submission) == rows + 1
    assert {value for (value,) in submission[1:]} <= {"0", "1"}

    metrics = json.loads((output / "report" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"adapter", "base"} and metrics["models"]["adapter"]["rows"] == rows
    assert len(metrics["comparisons"]) == 1
    report = (output / "report" / "report.md").read_text()
    pngs = sorted(p.name for p in (output / "report").glob("*.png"))
    assert pngs and all(name in report for name in pngs)
    assert summary["evaluation"]["adapter"]["rows"] == rows


@pytest.mark.slow
@pytest.mark.server
def test_demo_output_index_links_resolve(demo):
    import re

    output, summary, _ = demo
    index = (output / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert len(links) >= 12
    for link in links:
        assert (output / link).exists(), link
    assert "| adapter |" in index and "| total |" in index
    assert "## Answers parsed per stage" in index and "| predict (adapter) |" in index
    for label, path in summary["artifacts"].items():
        assert Path(path).exists() or (output.parent / path).exists(), label
