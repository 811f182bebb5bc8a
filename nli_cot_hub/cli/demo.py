"""``nli-cot demo``: the whole pipeline offline on the embedded model and real coursework rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nli_cot_hub.cli.common import clean_errors


def default_data_root() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@clean_errors
def demo(
    output_dir: Annotated[Path, typer.Option(help="Where every artifact is written.")] = Path("demo_output"),
    data_root: Annotated[Path, typer.Option(help="The shared real-data folder.")] = default_data_root(),
    rows: Annotated[int, typer.Option(help="How many coursework trial rows to run on.")] = 50,
) -> None:
    """Run every stage that exists offline on the embedded model and real coursework rows."""
    from nli_cot_hub.data import contamination, describe, load_pairs
    from nli_cot_hub.models import resolve_model

    console = Console()
    output_dir.mkdir(parents=True, exist_ok=True)
    trial = load_pairs(data_root / "comp34812_nli" / "trial_jd0g.csv").head(rows)
    dev = load_pairs(data_root / "comp34812_nli" / "dev_jd0g.csv")
    console.rule("data")
    stats = {"trial": describe(trial), "dev": describe(dev)}
    overlap = contamination(trial, dev)
    stats["trial_in_dev"] = overlap.count
    (output_dir / "data_stats.json").write_text(json.dumps(stats, indent=2))
    console.print(f"trial rows: {len(trial)}, dev rows: {len(dev)}, trial pairs also in dev: {overlap.count}")
    console.rule("embedded model")
    model_path = resolve_model("embedded")
    console.print(f"embedded model ready at {model_path}")
    console.rule("done")
    console.print(f"artifacts in {output_dir.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
