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
    result = run_cli("data", "check", str(path), "--premise-col", "sentence1", "--hypothesis-col", "sentence2",
                     "--labels", "inverted", "--json")
    assert result.returncode == 0, result.stderr
    assert '"0": 1' in result.stdout and '"1": 1' in result.stdout
