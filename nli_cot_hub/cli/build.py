"""``nli-cot build`` (records -> Hub data set with configs, splits, card) and ``nli-cot lengths``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import RunFailed, check_output_file, clean_errors

JD0G_SOURCE_TEXT = ("the COMP34812 NLI coursework data (SNLI and MNLI pairs), annotated by the original "
                    "j-d0g/mistral-7b-nli project")


@clean_errors
def build(
    store: Annotated[Optional[list[Path]], typer.Option(
        "--store", help="JSONL store of CoT records (generate, reflect or human-rationale output); repeatable. "
        "Reflected records are matched to originals by id.")] = None,
    jd0g: Annotated[Optional[Path], typer.Option(
        "--jd0g", help="Folder with the original author's artifacts (sample_thoughts.json, "
        "sample_reflections.json, dev_missing_gold.csv) to import as records.")] = None,
    jd0g_dev_missing: Annotated[bool, typer.Option(
        "--jd0g-dev-missing/--no-jd0g-dev-missing",
        help="Also import the author's 3,005 dev thoughts (dev_missing_gold.csv) as originals.")] = False,
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", help="Write the data set here, in the same file layout as the Hub repo.")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option(
        "--push-to-hub", help="Hub repo id (namespace/name) to push to; token from HF_TOKEN, endpoint from "
        "HF_ENDPOINT.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier build in --output-dir (otherwise that is an error).")] = False,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    eval_set: Annotated[Optional[list[str]], typer.Option(
        "--eval-set", help="Evaluation data (any format `nli-cot data check` reads) that no built pair may "
        "occur in; repeatable.")] = None,
    on_contamination: Annotated[str, typer.Option(
        "--on-contamination", help="refuse: stop with an error if a pair occurs in an --eval-set; "
        "drop: remove those pairs and report them.")] = "refuse",
    seed: Annotated[int, typer.Option(help="Seed of the split permutation.")] = 42,
    validation_fraction: Annotated[float, typer.Option(help="Share of pairs in the validation split.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Share of pairs in the test split.")] = 0.1,
    pretty_name: Annotated[str, typer.Option(help="Card title (pretty_name).")] = "NLI chain-of-thought",
    license: Annotated[str, typer.Option(help="License id for the card.")] = "apache-2.0",
    source_dataset: Annotated[Optional[list[str]], typer.Option(
        "--source-dataset", help="Card source_datasets entry, e.g. 'extended|snli'; repeatable "
        "(default: original).")] = None,
) -> None:
    """Build the original / reflected / combined configs with seeded, label-stratified splits, a dataset card,
    and write them to --output-dir and/or push them to the Hub.

    At least one of --store / --jd0g is needed, and at least one of --output-dir / --push-to-hub.
    """
    from rich.console import Console
    from rich.table import Table

    from nli_cot_hub.build import (
        SplitSpec, build_dataset, check_output_dir, import_jd0g, push, read_stores, write_local,
    )
    from nli_cot_hub.data import load_pairs
    from nli_cot_hub.dataset_card import CardInfo, render_card, stats_rows
    from nli_cot_hub.hub import hub_token

    if on_contamination not in ("refuse", "drop"):
        raise typer.BadParameter("--on-contamination must be refuse or drop")
    if output_dir is None and push_to_hub is None:
        raise typer.BadParameter("give --output-dir and/or --push-to-hub")
    try:
        splits = SplitSpec(seed=seed, validation=validation_fraction, test=test_fraction)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if output_dir is not None:
        check_output_dir(output_dir, overwrite)
    if push_to_hub is not None and not hub_token():
        raise typer.BadParameter("--push-to-hub needs a token: set HF_TOKEN (or run `hf auth login`)")
    console = Console(stderr=True)
    records = read_stores(store or [])
    if jd0g is not None:
        records += import_jd0g(jd0g, dev_missing=jd0g_dev_missing)
    eval_sets = {name: load_pairs(name) for name in (eval_set or [])}
    built = build_dataset(records, splits=splits, eval_sets=eval_sets,
                          on_contamination=on_contamination)  # type: ignore[arg-type]
    info = CardInfo(repo_id=push_to_hub or "your-name/nli-cot", pretty_name=pretty_name, license=license,
                    source_datasets=source_dataset or ["original"],
                    source_text=JD0G_SOURCE_TEXT if jd0g is not None else "the input NLI data set", seed=seed)
    card = render_card(built, info)

    table = Table(title="built data set")
    for column in ("config", "split", "rows", "label 1", "flag", "thought words p10/p50/p90/max"):
        table.add_column(column)
    for row in stats_rows(built):
        table.add_row(row["config"], row["split"], str(row["rows"]), row["label_1"], row["flag"], row["thought"])
    console.print(table)
    report = built.report
    if report.unresolved_reflections:
        console.print(f"{len(report.unresolved_reflections)} reflection(s) did not reach the gold label, left out "
                      f"of combined: {', '.join(report.unresolved_reflections[:10])}")
    if report.contaminated_pairs:
        console.print(f"dropped {report.contaminated_pairs} pair(s) that occur in the evaluation set(s)")

    if output_dir is not None:
        written = write_local(built, output_dir, card, overwrite=overwrite)
        console.print(f"wrote {len(written)} files to {output_dir}")
    if push_to_hub is not None:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            sha = push(built, push_to_hub, card, private=private)
        except HfHubHTTPError as error:
            from nli_cot_hub.hub_transfer import hub_error_line

            raise RunFailed(f"push failed: {hub_error_line(error, push_to_hub, 'dataset', None)}") from None
        console.print(f"pushed to {push_to_hub} (dataset) at commit {sha}")


@clean_errors
def lengths(
    dataset: Annotated[str, typer.Argument(help="Built data set: a local folder (--output-dir of build) or a Hub "
                                                "repo id.")],
    tokenizer: Annotated[str, typer.Option(help="Tokenizer (model folder, Hub id or 'embedded') whose chat "
                                                "template is applied to prompt + completion.")] = "embedded",
    config: Annotated[str, typer.Option(help="Config to measure.")] = "combined",
    split: Annotated[str, typer.Option(help="Split to measure ('all' for every split).")] = "train",
    quantile: Annotated[float, typer.Option(min=0.0, max=1.0, help="Recommend a max_length covering this share of "
                                            "examples (0 < q <= 1).")] = 0.99,
    multiple_of: Annotated[int, typer.Option(min=1, help="Round the recommendation up to a multiple of this.")] = 64,
    png: Annotated[Optional[Path], typer.Option(help="Histogram PNG path (default: lengths_<config>_<split>.png "
                                                     "in the current folder).")] = None,
) -> None:
    """Token lengths of prompt + completion under a chat template: distribution, longest example, a recommended
    max_length and how many examples it would truncate, accuracy by thought-length bucket when the rows carry
    predictions; prints a table and writes a PNG histogram."""
    from rich.console import Console
    from rich.table import Table

    from nli_cot_hub.lengths import load_rows, measure, plot_histogram

    if not 0 < quantile <= 1:
        raise typer.BadParameter(f"must be in (0, 1], got {quantile:g}", param_hint="--quantile")
    check_output_file(png, "--png")
    console = Console()
    rows = load_rows(dataset, config, split)
    result = measure(rows, tokenizer, quantile=quantile, multiple_of=multiple_of)
    png = png or Path(f"lengths_{config}_{split}.png")
    plot_histogram(result, png, title=f"{dataset} [{config}/{split}] tokens ({tokenizer})")

    table = Table(title=f"token lengths of prompt + completion ({len(result.lengths):,} examples)", show_header=False)
    for name, value in result.summary_rows():
        table.add_row(name, value)
    console.print(table)
    if result.accuracy_by_bucket:
        buckets = Table(title="accuracy by thought length (tokens)")
        for column in ("thought tokens", "examples", "accuracy"):
            buckets.add_column(column)
        for bucket in result.accuracy_by_bucket:
            buckets.add_row(bucket["range"], str(bucket["count"]), f"{bucket['accuracy']:.1%}")
        console.print(buckets)
    if result.wanted is not None:
        console.print(f"warning: the p{quantile * 100:g} length rounds up to {result.wanted}, above the model's context "
                      f"of {result.context} tokens; recommending the context length instead")
    console.print(f"recommended max_length: {result.recommended} (truncates {result.truncated} of "
                  f"{len(result.lengths)}); histogram: {png}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("lengths")(lengths)
