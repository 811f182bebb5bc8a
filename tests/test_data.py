import pandas as pd
import pytest

from nli_cot_hub.data import (
    Columns,
    DataError,
    LabelMapping,
    contamination,
    describe,
    load_pairs,
    pair_rows,
    parse_label_map,
)
from tests.conftest import shared


def test_coursework_dev_counts():
    pairs = load_pairs(shared("comp34812_nli/dev_jd0g.csv"))
    stats = describe(pairs)
    assert stats["rows"] == 6737
    assert stats["label_counts"][1] == 3478
    assert stats["label_counts"][0] == 3259


def test_trial_file_with_bom_and_multiline_fields():
    pairs = load_pairs(shared("comp34812_nli/trial_jd0g.csv"))
    assert list(pairs.columns[:4]) == ["id", "premise", "hypothesis", "label"]
    assert len(pairs) == 50
    assert (pairs["label"] == 1).sum() == 23


def test_unlabeled_needs_flag():
    with pytest.raises(DataError, match="missing column 'label'"):
        load_pairs(shared("comp34812_nli/test_unlabeled_jd0g.csv"))
    pairs = load_pairs(shared("comp34812_nli/test_unlabeled_jd0g.csv"), require_labels=False)
    assert len(pairs) == 3302 and pairs["label"].isna().all()


def test_line_aligned_esnli_needs_policy_for_neutral():
    with pytest.raises(DataError, match=r"row 1: field 'label'.*neutral"):
        load_pairs(shared("esnli/dev"))
    strict = load_pairs(shared("esnli/dev"), labels=LabelMapping(three_class="strict"))
    assert len(strict) == 9842 and int(strict["label"].sum()) == 3329
    assert "explanation_1" in strict.columns
    lenient = load_pairs(shared("esnli/dev"), labels=LabelMapping(three_class="non-contradiction"))
    assert int(lenient["label"].sum()) == 3329 + 3235


def test_mnli_hard_loads():
    pairs = load_pairs(shared("mnli_hard/MNLIMatchedHardWithHardTest"), labels=LabelMapping(three_class="strict"))
    assert len(pairs) == 4573 and int(pairs["label"].sum()) == 1701


def test_glue_style_tsv_with_inverted_labels(tmp_path):
    path = tmp_path / "rte.tsv"
    path.write_text(
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tA dog runs in a park.\tAn animal is outside.\t0\n"
        "1\tA dog runs in a park.\tA cat sleeps indoors.\t1\n",
        encoding="utf-8",
    )
    pairs = load_pairs(
        path, columns=Columns("sentence1", "sentence2", "label", "index"), labels=LabelMapping(scheme="inverted")
    )
    assert pairs["label"].tolist() == [1, 0]
    assert pairs["id"].tolist() == ["0", "1"]
    assert pairs["premise"].iloc[0] == "A dog runs in a park."


@pytest.mark.parametrize(
    "raw, mapping, expected",
    [
        ("entailment", LabelMapping(), 1),
        ("NOT_ENTAILMENT", LabelMapping(), 0),
        ("contradiction", LabelMapping(), 0),
        ("neutral", LabelMapping(three_class="non-contradiction"), 1),
        ("neutral", LabelMapping(three_class="strict"), 0),
        (2, LabelMapping(scheme="glue3"), 0),
        (0, LabelMapping(scheme="glue3"), 1),
        ("1.0", LabelMapping(), 1),
        ("yes", LabelMapping(custom={"yes": 0}), 0),
    ],
)
def test_label_mapping(raw, mapping, expected):
    assert mapping.map(raw) == expected


def test_label_map_spec():
    assert parse_label_map("yes=1, no=0") == {"yes": 1, "no": 0}
    with pytest.raises(ValueError):
        parse_label_map("yes=2")


@pytest.mark.parametrize(
    "content, message",
    [
        ("premise,label\nA man.,1\n", "missing column 'hypothesis'"),
        (
            "premise,hypothesis,label\nA man.,A person.,1\nA dog.,A cat.,7\n",
            r"row 2: field 'label': unknown label '7'",
        ),
        (
            "premise,hypothesis,label\nA man.,A person.,1\n  ,A cat.,0\n",
            r"row 2: field 'premise' \(premise\) is empty",
        ),
        ('premise,hypothesis,label\n"A man.,A person.,1\n', "cannot be read as CSV"),
    ],
)
def test_bad_files_name_file_row_field(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        load_pairs(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_jsonl_and_parquet_roundtrip(tmp_path):
    frame = pd.DataFrame(
        {"premise": ["A b.", "C d."], "hypothesis": ["E.", "F."], "label": ["entailment", "contradiction"]}
    )
    frame.to_json(tmp_path / "x.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "x.parquet")
    for name in ("x.jsonl", "x.parquet"):
        assert load_pairs(tmp_path / name)["label"].tolist() == [1, 0]
    (tmp_path / "broken.jsonl").write_text('{"premise": "a"}\n{oops\n')
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        load_pairs(tmp_path / "broken.jsonl")


def test_pair_rows_keeps_order_and_the_four_fields(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "pid,premise,hypothesis,label,source\n"
        "b,A dog runs.,An animal moves.,1,snli\n"
        "a,A dog runs.,A cat sleeps.,0,mnli\n",
        encoding="utf-8",
    )
    rows = pair_rows(load_pairs(path, columns=Columns(id="pid")))
    assert [list(row) for row in rows] == [["id", "premise", "hypothesis", "label"]] * 2
    assert [row["id"] for row in rows] == ["b", "a"]
    assert [int(row["label"]) for row in rows] == [1, 0]
    assert rows[1]["hypothesis"] == "A cat sleeps."


def test_pair_rows_of_unlabeled_pairs_carry_missing_labels():
    pairs = load_pairs(shared("comp34812_nli/test_unlabeled_jd0g.csv"), require_labels=False)
    rows = pair_rows(pairs)
    assert len(rows) == 3302
    assert all(pd.isna(row["label"]) for row in rows)
    assert rows[0]["premise"] == pairs["premise"].iloc[0]


def test_contamination_coursework_dev_vs_snli_dev():
    dev = load_pairs(shared("comp34812_nli/dev_jd0g.csv"))
    esnli = load_pairs(shared("esnli/dev"), labels=LabelMapping(three_class="strict"))
    overlap = contamination(dev, esnli)
    assert overlap.count == 436
    assert overlap.label_agreement == 1.0


def test_one_loader_reads_files_saved_folders_and_built_data_sets_alike(tmp_path):
    """load_dataset_dict is what training and `nli-cot lengths` read through, and read_table is its DataFrame view:
    a CSV keeps its text as written (the BOM'd header, ids), a .json file of JSON lines reads, a save_to_disk
    folder and a Hub-layout folder give their splits, and whole numbers with gaps stay whole."""
    from datasets import DatasetDict

    from nli_cot_hub.build import build_dataset, import_artifacts, write_local
    from nli_cot_hub.data import load_dataset_dict, read_table, split_of
    from nli_cot_hub.dataset_card import CardInfo, render_card

    trial = shared("comp34812_nli/trial_jd0g.csv")
    loaded = load_dataset_dict(trial)
    assert list(loaded) == ["train"]
    assert loaded["train"].to_pandas().equals(read_table(trial))
    assert loaded["train"].column_names[:3] == ["premise", "hypothesis", "label"]

    thoughts = load_dataset_dict(shared("comp34812_nli_jd0g_cot/sample_thoughts.json"))["train"]
    assert len(thoughts) == 100 and {"premise", "thought_process", "predicted_label"} <= set(thoughts.column_names)

    gaps = tmp_path / "gaps.jsonl"
    gaps.write_text(
        '{"premise": "a", "hypothesis": "b", "label": 1, "predicted_label": null}\n'
        '{"premise": "c", "hypothesis": "d", "label": 0, "predicted_label": 0}\n'
    )
    assert load_dataset_dict(gaps)["train"]["predicted_label"] == [None, 0]

    DatasetDict({"train": thoughts.select(range(30)), "validation": thoughts.select(range(30, 40))}).save_to_disk(
        tmp_path / "saved"
    )
    saved = load_dataset_dict(tmp_path / "saved")
    assert {name: len(split) for name, split in saved.items()} == {"train": 30, "validation": 10}
    assert len(read_table(tmp_path / "saved", split="validation")) == 10

    built = build_dataset(import_artifacts(shared("comp34812_nli_jd0g_cot")))
    write_local(built, tmp_path / "built", render_card(built, CardInfo()))
    original = load_dataset_dict(tmp_path / "built", "original")
    assert len(split_of(original, "all", "built")) == 100
    with pytest.raises(DataError, match="no split 'dev'"):
        split_of(original, "dev", "built")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset_dict(tmp_path / "missing.csv")
