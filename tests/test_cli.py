"""The CLI's one error boundary: every expected failure is one line ``error: ...`` and exit code 1 or 2;
``nli-cot --debug`` shows the traceback instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nli_cot_hub.cli.common import RunFailed, exit_code_of, one_line
from nli_cot_hub.data import DataError
from tests.conftest import shared

TRIAL = "comp34812_nli/trial_jd0g.csv"


def nli_cot(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nli_cot_hub", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_one_line_names_the_file_and_masks_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_42")
    assert (
        one_line(PermissionError(13, "Permission denied", "/data/out.jsonl")) == "/data/out.jsonl: Permission denied"
    )
    assert one_line(DataError("a.csv: row 2:\n  field 'label'")) == "a.csv: row 2: field 'label'"
    assert one_line(RuntimeError("server said hf_secret_value_42")) == "RuntimeError: server said ***"
    assert one_line(KeyError("premise")) == "KeyError: premise"
    assert one_line(AttributeError("'NoneType' object has no attribute 'id'")).startswith("AttributeError: ")
    assert len(one_line(ValueError("x" * 5000))) < 700


@pytest.mark.parametrize(
    "error, code",
    [
        (DataError("bad row"), 2),
        (FileNotFoundError("x"), 2),
        (IsADirectoryError("x"), 2),
        (ValueError("x"), 2),
        (RunFailed("too many failures"), 1),
        (ConnectionRefusedError("x"), 1),
        (RuntimeError("x"), 1),
    ],
)
def test_exit_codes(error, code):
    assert exit_code_of(error) == code


def test_debug_shows_the_traceback_that_is_otherwise_one_line(tmp_path):
    header_only = tmp_path / "pairs.csv"
    header_only.write_text("premise,hypothesis,label\n")
    plain = nli_cot("data", "check", header_only)
    assert plain.returncode == 2 and "no data rows" in error_line(plain)
    debug = nli_cot("--debug", "data", "check", header_only)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr


def test_a_corrupt_store_line_is_named_whole(tmp_path):
    store = tmp_path / "cot.jsonl"
    store.write_text(
        '{"id": "1", "premise": "a", "hypothesis": "b"}\n{"id": "2", "premise": "a", "hypo\n'
        '{"id": "3", "premise": "a", "hypothesis": "b"}\n'
    )
    result = nli_cot("evaluate", store, "-o", tmp_path / "out")
    assert result.returncode == 2
    line = error_line(result)
    assert "cot.jsonl: line 2" in line and "column" in line


def test_outputs_that_cannot_be_written_are_one_line_for_every_stage(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    under_file = blocker / "out"
    backend = ["-b", "openai:http://127.0.0.1:9/v1#m"]
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text('{"id": "1", "premise": "a", "hypothesis": "b", "label": 1, "predicted_label": 1}\n')
    cases = [
        ["generate", shared(TRIAL), "-o", under_file / "cot.jsonl", *backend],
        ["predict", shared(TRIAL), "-o", under_file / "pred.jsonl", *backend],
        ["evaluate", predictions, "-o", under_file],
        ["build", "--import-artifacts", shared("comp34812_nli_jd0g_cot"), "--output-dir", under_file],
        ["rationales", shared("esnli/dev"), "-o", under_file / "h.jsonl", "--limit", 2],
    ]
    for arguments in cases:
        result = nli_cot(*arguments)
        assert result.returncode == 2, (arguments, result.stderr[-2000:])
        assert "a-file" in error_line(result) or str(tmp_path) in error_line(result)


def test_file_outputs_are_checked_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    backend = ["-b", "openai:http://127.0.0.1:9/v1#m"]
    cases = [
        ["predict", shared(TRIAL), "-o", tmp_path / "p.jsonl", "--submission", tmp_path, *backend],
        ["predict", shared(TRIAL), "-o", tmp_path / "p.jsonl", "--submission", blocker / "s.csv", *backend],
        ["lengths", tmp_path, "--png", tmp_path],
    ]
    for arguments in cases:
        result = nli_cot(*arguments)
        assert result.returncode == 2, (arguments, result.stderr[-2000:])
        assert "--submission" in error_line(result) or "--png" in error_line(result)
    assert not (tmp_path / "p.jsonl").exists()


def test_a_folder_given_as_a_store_is_one_line(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for arguments in (
        ["build", "--store", folder, "--output-dir", tmp_path / "built"],
        ["evaluate", folder, "-o", tmp_path / "out"],
    ):
        result = nli_cot(*arguments)
        assert result.returncode == 2, (arguments, result.stderr[-2000:])
        assert "is a folder" in error_line(result)
