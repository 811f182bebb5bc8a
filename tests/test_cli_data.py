import subprocess
import sys

from tests.conftest import shared


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nli_cot_hub", *args], capture_output=True, text=True)


def test_data_check_reports_counts():
    result = run_cli("data", "check", str(shared("comp34812_nli/dev_jd0g.csv")), "--json")
    assert result.returncode == 0, result.stderr
    assert '"rows": 6737' in result.stdout and '"1": 3478' in result.stdout


def test_data_check_bad_file_exits_nonzero_with_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("premise,hypothesis,label\nA man sleeps.,A person rests.,7\n")
    result = run_cli("data", "check", str(bad))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {bad}: row 1: field 'label': unknown label '7' (scheme 'binary' expects 0 or 1)"]


def test_data_check_glue_tsv_with_flags(tmp_path):
    path = tmp_path / "glue.tsv"
    path.write_text("sentence1\tsentence2\tlabel\nA dog runs.\tAn animal moves.\t0\nA dog runs.\tA cat sits.\t1\n")
    result = run_cli(
        "data",
        "check",
        str(path),
        "--premise-col",
        "sentence1",
        "--hypothesis-col",
        "sentence2",
        "--labels",
        "inverted",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert '"0": 1' in result.stdout and '"1": 1' in result.stdout


def test_data_check_and_overlap_from_a_yaml_config_with_a_flag_override_and_as_functions(tmp_path):
    from nli_cot_hub.data_check import CheckConfig, OverlapConfig, run_check, run_overlap

    path = tmp_path / "glue.tsv"
    path.write_text(
        "sentence1\tsentence2\tlabel\nA dog runs.\tAn animal moves.\t0\nA dog runs.\tA cat sits.\t0\n"
        "A man sleeps.\tA person rests.\t1\n"
    )
    config = tmp_path / "check.yaml"
    config.write_text("premise_col: sentence1\nhypothesis-col: sentence2\nlabels: inverted\n")
    result = run_cli("data", "check", str(path), "--config", str(config), "--labels", "binary", "--json")
    assert result.returncode == 0, result.stderr
    assert '"0": 2' in result.stdout and '"1": 1' in result.stdout  # binary (the flag), not the file's inverted

    checked = run_check(
        CheckConfig(path=str(path), premise_col="sentence1", hypothesis_col="sentence2", labels="inverted")
    )
    assert checked.source == str(path) and checked.stats["label_counts"] == {0: 1, 1: 2}

    other = tmp_path / "other.tsv"
    other.write_text("sentence1\tsentence2\tlabel\nA dog runs.\tA cat sits.\t1\n")
    ids = tmp_path / "ids.txt"
    overlap = run_overlap(
        OverlapConfig(
            left=str(path), right=str(other), premise_col="sentence1", hypothesis_col="sentence2", ids_out=str(ids)
        )
    )
    assert overlap.overlap.count == 1 and overlap.overlap.label_agreement == 0.0 and overlap.ids_out == ids
    assert ids.read_text() == "1\n"

    config.write_text(
        f"left: {path}\nright: {other}\npremise_col: sentence1\nhypothesis_col: sentence2\nlabels: inverted\n"
    )
    result = run_cli("data", "overlap", "--config", str(config), "--labels", "binary")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"1 of 3 rows of {path} (33.3%) also occur in {other}",
        "label agreement on the overlap: 0.0%",
    ]
