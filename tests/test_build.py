"""The data set builder on the original author's real artifacts: configs, splits, contamination, card, output."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nli_cot_hub.build import (
    ContaminationError,
    SplitSpec,
    assign_splits,
    build_dataset,
    data_file,
    import_artifacts,
    read_stores,
)
from nli_cot_hub.chat_format import training_example
from nli_cot_hub.data import DataError, load_pairs, pair_key
from nli_cot_hub.dataset_card import CardInfo, render_card, validate_card
from nli_cot_hub.records import CoTRecord
from tests.conftest import REPO, shared

ARTIFACTS = "comp34812_nli_jd0g_cot"


@pytest.fixture(scope="module")
def artifacts_dir() -> Path:
    return shared(ARTIFACTS)


@pytest.fixture(scope="module")
def artifact_records(artifacts_dir) -> list[CoTRecord]:
    return import_artifacts(artifacts_dir)


def json_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def all_rows(built, config: str) -> pd.DataFrame:
    return pd.concat(built.configs[config].values(), ignore_index=True)


def keys(frame: pd.DataFrame) -> list[str]:
    return [pair_key(p, h) for p, h in zip(frame["premise"], frame["hypothesis"])]


def test_importer_turns_every_artifact_row_into_a_record(artifacts_dir, artifact_records):
    thoughts = json_rows(artifacts_dir / "sample_thoughts.json")
    reflections = json_rows(artifacts_dir / "sample_reflections.json")
    by_source = Counter(r.source for r in artifact_records)
    assert by_source == {"original": len(thoughts), "reflected": len(reflections)}

    originals = {r.id: r for r in artifact_records if r.source == "original"}
    for row in thoughts:
        record = originals[f"sample-{row['id']}"]
        assert (record.premise, record.label, record.predicted_label, record.reask_count) == (
            row["premise"],
            row["true_label"],
            row["predicted_label"],
            row["reprompt_counts"],
        )
        assert record.correct == row["correct"]
    reflected = {r.id: r for r in artifact_records if r.source == "reflected"}
    for row in reflections:
        record = reflected[f"sample-{row['id']}"]
        assert record.thought_process == row["improved_thought_process"]
        assert record.error_analysis == row["error_analysis"]
        # the reflections are exactly the originals the generator got wrong
        assert originals[record.id].correct is False

    with_dev = import_artifacts(artifacts_dir, dev_thoughts=True)
    dev = pd.read_csv(artifacts_dir / "dev_missing_gold.csv")
    assert len(with_dev) == len(artifact_records) + len(dev)
    dev_records = [r for r in with_dev if r.id.startswith("dev-")]
    assert sum(r.correct for r in dev_records) == int(dev["correct_prediction"].sum())


def test_importer_names_file_row_and_field_on_bad_input(tmp_path, artifacts_dir):
    for name in ("sample_thoughts.json", "sample_reflections.json"):
        (tmp_path / name).write_text((artifacts_dir / name).read_text())
    rows = json_rows(tmp_path / "sample_reflections.json")
    rows[4]["true_label"] = "maybe"
    (tmp_path / "sample_reflections.json").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"sample_reflections.json: row 5: field true_label"):
        import_artifacts(tmp_path)


def test_configs_from_the_author_artifacts(artifacts_dir, artifact_records):
    built = build_dataset(artifact_records)
    original, reflected, combined = (all_rows(built, c) for c in ("original", "reflected", "combined"))
    assert len(original) == len(json_rows(artifacts_dir / "sample_thoughts.json"))
    assert len(reflected) == len(json_rows(artifacts_dir / "sample_reflections.json"))

    # combined: the correct originals plus the reflections that reached the gold label, every pair once
    correct_originals = set(keys(original[original["correct"]]))
    corrected = set(keys(reflected[reflected["corrected"]]))
    assert not correct_originals & corrected
    assert Counter(keys(combined)) == Counter(correct_originals | corrected)
    unresolved = reflected[~reflected["corrected"]]
    assert sorted(unresolved["id"]) == built.report.unresolved_reflections
    # every input pair is in combined once, except the reflections that still disagree with the gold label
    assert set(keys(combined)) | set(keys(unresolved)) == set(keys(original))

    # the reflected rows carry the initial attempt next to the improvement
    row = reflected.set_index("id").loc["sample-90"]
    initial = next(r for r in artifact_records if r.id == "sample-90" and r.source == "original")
    assert row["initial_thought_process"] == initial.thought_process
    assert row["initial_predicted_label"] == initial.predicted_label

    # the training columns are exactly the shared chat format for the gold label
    for record in combined.head(5).to_dict("records"):
        example = training_example(record["premise"], record["hypothesis"], record["thought_process"], record["label"])
        assert record["prompt"] == example["prompt"] and record["completion"] == example["completion"]


def test_splits_are_seeded_stratified_and_shared_by_all_configs(artifact_records):
    built = build_dataset(artifact_records, splits=SplitSpec(seed=7))
    shuffled = list(artifact_records)
    random.Random(1).shuffle(shuffled)
    again = build_dataset(shuffled, splits=SplitSpec(seed=7))
    for config, splits in built.configs.items():
        for split, frame in splits.items():
            assert (
                frame.sort_values("id")
                .reset_index(drop=True)
                .equals(again.configs[config][split].sort_values("id").reset_index(drop=True))
            )

    split_of: dict[str, str] = {}
    for splits in built.configs.values():
        for split, frame in splits.items():
            for key in keys(frame):
                assert split_of.setdefault(key, split) == split  # one pair, one split, in every config

    other_seed = build_dataset(artifact_records, splits=SplitSpec(seed=8))
    assert set(all_rows(other_seed, "original")["id"]) == set(all_rows(built, "original")["id"])
    assert set(other_seed.configs["original"]["test"]["id"]) != set(built.configs["original"]["test"]["id"])

    pairs = {f"pair{i}": i % 3 == 0 for i in range(300)}  # label 1 for a third
    assignment = assign_splits({k: int(v) for k, v in pairs.items()}, SplitSpec(seed=3, validation=0.2, test=0.1))
    table = Counter((assignment[k], int(v)) for k, v in pairs.items())
    assert table == {
        ("train", 0): 140,
        ("validation", 0): 40,
        ("test", 0): 20,
        ("train", 1): 70,
        ("validation", 1): 20,
        ("test", 1): 10,
    }
    with pytest.raises(ValueError):
        SplitSpec(validation=0.6, test=0.5)


def test_contamination_guard_on_the_real_dev_set(artifact_records):
    # SOURCE.md: 18 of the 100 sample pairs also occur in dev_jd0g.csv
    dev = load_pairs(shared("comp34812_nli/dev_jd0g.csv"))
    dev_keys = set(keys(dev))
    leaking = {k for k in keys(all_rows(build_dataset(artifact_records), "original")) if k in dev_keys}
    assert len(leaking) == 18
    with pytest.raises(ContaminationError, match="18 pairs"):
        build_dataset(artifact_records, eval_sets={"dev_jd0g.csv": dev}, on_contamination="refuse")

    dropped = build_dataset(artifact_records, eval_sets={"dev_jd0g.csv": dev}, on_contamination="drop")
    assert dropped.report.contaminated_pairs == 18
    for config in ("original", "reflected", "combined"):
        assert not set(keys(all_rows(dropped, config))) & dev_keys
    assert len(all_rows(dropped, "original")) == 100 - 18


def test_build_from_record_stores_with_human_rationales(tmp_path, artifact_records):
    from nli_cot_hub.store import RecordStore

    with RecordStore(tmp_path / "generate.jsonl") as originals, RecordStore(tmp_path / "reflect.jsonl") as fixes:
        for record in artifact_records:
            (originals if record.source == "original" else fixes).append(record)
    # human rationales: the first e-SNLI dev rows (neutral counts as 1, as in the coursework labels)
    lines = {
        name: shared(f"esnli/dev/{name}.dev").read_text().split("\n")[:12]
        for name in ("s1", "s2", "labels", "preproc1_expl_1")
    }
    humans = [
        CoTRecord(
            id=f"esnli-{i}",
            premise=lines["s1"][i],
            hypothesis=lines["s2"][i],
            label=0 if lines["labels"][i] == "contradiction" else 1,
            thought_process=lines["preproc1_expl_1"][i],
            source="human",
            prompt_version="esnli-human-v1",
        )
        for i in range(12)
    ]
    with RecordStore(tmp_path / "human.jsonl") as store:
        for record in humans:
            store.append(record)
    records = read_stores([tmp_path / "generate.jsonl", tmp_path / "reflect.jsonl", tmp_path / "human.jsonl"])
    built = build_dataset(records)
    direct = build_dataset(artifact_records)
    assert len(all_rows(built, "reflected")) == len(all_rows(direct, "reflected"))
    combined = all_rows(built, "combined")
    assert len(combined) == len(all_rows(direct, "combined")) + 12
    assert Counter(combined["source"])["human"] == 12
    card = render_card(built, CardInfo())
    assert "crowdsourced" in card and "12 of the `original` rows are human rationales" in card

    failed = CoTRecord(id="x-1", premise="p", hypothesis="h", label=1, status="failed", error="timeout")
    assert build_dataset(records + [failed]).report.skipped_failed == 1
    with pytest.raises(DataError, match="more than once"):
        build_dataset(records + [records[0]])


def test_card_yaml_and_prose(artifact_records):
    from huggingface_hub import DatasetCard

    built = build_dataset(artifact_records)
    text = render_card(
        built,
        CardInfo(
            repo_id="someone/nli-cot",
            pretty_name="j-d0g CoT",
            seed=42,
            source_datasets=["extended|snli", "extended|multi_nli"],
        ),
    )
    card = DatasetCard(text)
    meta = card.data.to_dict()
    assert meta["pretty_name"] == "j-d0g CoT" and meta["annotations_creators"] == ["machine-generated"]
    assert meta["size_categories"] == ["n<1K"] and meta["source_datasets"] == ["extended|snli", "extended|multi_nli"]
    assert meta["task_categories"] == ["text-classification"] and meta["license"] == "apache-2.0"
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["combined"]["default"] is True
    assert {f["split"]: f["path"] for f in configs["reflected"]["data_files"]} == {
        s: data_file("reflected", s) for s in built.configs["reflected"]
    }
    for config, splits in built.configs.items():
        for split, frame in splits.items():
            assert f"| `{config}` | {split} | {len(frame)} |" in card.text
    assert "open-mistral-7b" in card.text and "jd0g-reflect" in card.text and "sample-90" in card.text
    assert "neutral" in card.text and "subjective" in card.text
    infos = {i["config_name"]: {s["name"]: s["num_examples"] for s in i["splits"]} for i in meta["dataset_info"]}
    assert infos == built.counts()
    features = {f["name"] for f in next(i for i in meta["dataset_info"] if i["config_name"] == "combined")["features"]}
    assert {"prompt", "completion", "thought_process", "label"} <= features

    broken = text.replace(data_file("reflected", "test"), "reflected/elsewhere.parquet")
    with pytest.raises(ValueError, match="do not match"):
        validate_card(broken, built)


def test_cli_build_writes_the_hub_layout_that_load_dataset_reads(tmp_path, artifacts_dir, artifact_records):
    from datasets import load_dataset

    from nli_cot_hub.cli import app, build_app

    build_app()
    out = tmp_path / "cot"
    result = CliRunner().invoke(
        app, ["build", "--import-artifacts", str(artifacts_dir), "--output-dir", str(out), "--seed", "42"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    built = build_dataset(artifact_records, splits=SplitSpec(seed=42))
    assert files == sorted(["README.md"] + [data_file(c, s) for c, splits in built.configs.items() for s in splits])

    loaded = load_dataset(str(out), "reflected", cache_dir=str(tmp_path / "cache"))
    for split, frame in built.configs["reflected"].items():
        assert loaded[split].to_pandas().equals(frame.astype(loaded[split].to_pandas().dtypes))
    assert sum(len(s) for s in load_dataset(str(out), "original", cache_dir=str(tmp_path / "cache")).values()) == 100

    again = CliRunner().invoke(app, ["build", "--import-artifacts", str(artifacts_dir), "--output-dir", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output  # an earlier build is never replaced silently
    replaced = CliRunner().invoke(
        app,
        [
            "build",
            "--import-artifacts",
            str(artifacts_dir),
            "--output-dir",
            str(out),
            "--overwrite",
            "--test-fraction",
            "0",
        ],
    )
    assert replaced.exit_code == 0, replaced.output
    assert not list(out.glob("*/test-*.parquet"))  # no stale split survives the replacement

    refused = CliRunner().invoke(
        app,
        [
            "build",
            "--import-artifacts",
            str(artifacts_dir),
            "--output-dir",
            str(tmp_path / "x"),
            "--eval-set",
            str(shared("comp34812_nli/dev_jd0g.csv")),
        ],
    )
    assert refused.exit_code == 2 and "18 pairs" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "x").exists()  # nothing half-written

    bad_store = tmp_path / "bad.jsonl"
    bad_store.write_text('{"id": "1", "premise": "p", "hypothesis": "h", "label": "yes"}\n{"id": "2"}\n')
    bad = CliRunner().invoke(app, ["build", "--store", str(bad_store), "--output-dir", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "bad.jsonl: line 1: field label" in bad.output


def test_dataset_script_runs_the_same_build(tmp_path, artifacts_dir):
    out = tmp_path / "script_out"
    # The script imports the installed package; PYTHONPATH makes that this checkout's code.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "dataset_scripts" / "build_cot_dataset.py"),
            "--import-artifacts",
            str(artifacts_dir),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / data_file("combined", "train")).exists() and (out / "README.md").exists()


@pytest.mark.server
def test_push_to_hub_round_trip_matches_the_local_copy(hub_server, tmp_path, artifacts_dir):
    """The CLI pushes in a fresh process (HF_ENDPOINT from the environment); a second process loads it back."""
    repo = f"{hub_server.user}/cot-{os.getpid()}-{tmp_path.name[-6:]}"
    env = {**os.environ, **hub_server.env(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    local = tmp_path / "local"
    pushed = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "build",
            "--import-artifacts",
            str(artifacts_dir),
            "--output-dir",
            str(local),
            "--push-to-hub",
            repo,
            "--private",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert hub_server.token not in pushed.stdout + pushed.stderr

    code = f"""
import json
from datasets import load_dataset
from huggingface_hub import HfApi, hf_hub_download
from nli_cot_hub.lengths import load_rows
hub = load_dataset({repo!r}, "reflected")
local = load_dataset({str(local)!r}, "reflected")
api = HfApi()
print(json.dumps({{
    "same_rows": {{s: hub[s].to_list() == local[s].to_list() for s in local}},
    "hub_splits": sorted(hub), "files": api.list_repo_files({repo!r}, repo_type="dataset"),
    "private": api.dataset_info({repo!r}).private,
    "card": open(hf_hub_download({repo!r}, "README.md", repo_type="dataset"), encoding="utf-8").read(),
    "lengths_rows": len(load_rows({repo!r}, "combined", "all")),
}}))
"""
    checked = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-3000:]
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert result["same_rows"] == dict.fromkeys(result["hub_splits"], True) and len(result["hub_splits"]) == 3
    local_files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert result["files"] == sorted(local_files + [".gitattributes"])
    assert result["private"] is True
    assert result["card"] == (local / "README.md").read_text(encoding="utf-8")
    assert result["lengths_rows"] == 99  # `nli-cot lengths` reads the Hub repo too


def test_build_with_no_usable_record_is_a_clear_error():
    from nli_cot_hub.build import build_dataset
    from nli_cot_hub.data import DataError
    from nli_cot_hub.records import CoTRecord

    failed = [
        CoTRecord(
            id=str(i), premise="A man sleeps.", hypothesis="A person rests.", label=1, status="failed", error="no JSON"
        )
        for i in range(3)
    ]
    with pytest.raises(DataError, match="none of the 3 records is usable"):
        build_dataset(failed)


def test_build_from_a_yaml_config_with_a_flag_override_and_as_a_function(tmp_path, artifacts_dir, artifact_records):
    from nli_cot_hub.build import BuildConfig, BuildResult, run_build
    from nli_cot_hub.cli import build_app

    config = tmp_path / "build.yaml"
    config.write_text(
        f"import_artifacts: {artifacts_dir}\noutput-dir: {tmp_path / 'from_yaml'}\nseed: 7\n"
        "test_fraction: 0.2\npretty_name: From a YAML file\n"
    )
    result = CliRunner().invoke(build_app(), ["build", "--config", str(config), "--seed", "42"])
    assert result.exit_code == 0, result.output
    expected = build_dataset(artifact_records, splits=SplitSpec(seed=42, test=0.2))  # the flag beat the file's 7
    written = pd.read_parquet(tmp_path / "from_yaml" / data_file("original", "test"))
    assert sorted(written["id"]) == sorted(expected.configs["original"]["test"]["id"])
    assert "pretty_name: From a YAML file" in (tmp_path / "from_yaml" / "README.md").read_text()

    done = run_build(BuildConfig(import_artifacts=str(artifacts_dir), output_dir=str(tmp_path / "direct")))
    assert isinstance(done, BuildResult) and done.pushed_to is None and done.commit is None
    assert done.output_dir == tmp_path / "direct" and (tmp_path / "direct" / "README.md") in done.written
    assert {(row["config"], row["split"]) for row in done.stats} == {
        (c, s) for c, splits in done.built.configs.items() for s in splits
    }
    assert done.report.unresolved_reflections == ["sample-90"] and done.card.startswith("---")

    for wrong, message in (
        (dict(import_artifacts=str(artifacts_dir)), "--output-dir and/or --push-to-hub"),
        (
            dict(store=[], import_dev_thoughts=True, output_dir=str(tmp_path / "n")),
            "--import-dev-thoughts needs --import-artifacts",
        ),
        (
            dict(
                import_artifacts=str(artifacts_dir),
                output_dir=str(tmp_path / "n"),
                validation_fraction=0.6,
                test_fraction=0.5,
            ),
            "--test-fraction",
        ),
    ):
        with pytest.raises(DataError, match=message):
            run_build(BuildConfig(**wrong))
    with pytest.raises(DataError, match="--on-contamination must be one of refuse, drop"):
        BuildConfig(on_contamination="ignore")
