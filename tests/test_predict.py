import csv
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from nli_cot_hub.cli import build_app
from nli_cot_hub.data import load_pairs
from nli_cot_hub.extract import extract_answer
from nli_cot_hub.predict import (
    PredictConfig,
    PredictSettings,
    fallback_for,
    majority_vote,
    predict,
    record_from_samples,
    run_predict,
    write_submission,
)
from nli_cot_hub.records import CoTRecord, TokenUsage
from nli_cot_hub.store import read_records
from tests.conftest import shared

TRIAL = "comp34812_nli/trial_jd0g.csv"


def _submission(path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["prediction"]
    return [row[0] for row in rows[1:]]


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([1, 1, 0], (1, 2 / 3)),
        ([0, None, 0, 1], (0, 0.5)),
        ([None, None], (None, 0.0)),
        ([0, 1], (0, 0.5)),
        ([1, 0, 0, 1], (1, 0.5)),
        ([None, 1], (1, 0.5)),
    ],
)
def test_majority_vote(labels, expected):
    winner, share = majority_vote(labels)
    assert (winner, share) == (expected[0], pytest.approx(expected[1]))


def test_self_consistency_record_keeps_votes_and_the_winning_thought():
    texts = [
        '{"thought_process": "a", "predicted_label": 0}',
        "no answer",
        '{"thought_process": "b", "predicted_label": 1}',
        '{"thought_process": "c", "predicted_label": 1}',
    ]
    row = {"id": 7, "premise": "p", "hypothesis": "h", "label": 1}
    record = record_from_samples(
        row,
        texts,
        [extract_answer(t) for t in texts],
        model="m",
        version="v",
        usage=TokenUsage(prompt_tokens=3, completion_tokens=9),
    )
    assert (record.id, record.label, record.predicted_label) == ("7", 1, 1)
    assert record.votes == [0, None, 1, 1] and record.vote_share == 0.5
    assert record.thought_process == "b" and record.raw_output == texts[2] and record.status == "ok"
    single = record_from_samples(
        row, texts[1:2], [extract_answer(texts[1])], model="m", version="v", usage=TokenUsage()
    )
    assert (single.predicted_label, single.status, single.votes) == (None, "failed", None)
    assert single.error and single.raw_output == "no answer"


def test_settings_reject_sampling_without_temperature():
    with pytest.raises(ValueError, match="temperature"):
        PredictSettings(num_samples=3)
    with pytest.raises(ValueError, match="prompt"):
        PredictSettings(prompt="fancy")


def test_submission_order_fallback_and_missing_rows(tmp_path):
    pairs = pd.DataFrame({"id": ["a", "b", "c", "d"], "premise": "p", "hypothesis": "h", "label": pd.NA})
    records = [
        CoTRecord(id="d", premise="p", hypothesis="h", predicted_label=0),
        CoTRecord(id="a", premise="p", hypothesis="h", predicted_label=0),
        CoTRecord(id="b", premise="p", hypothesis="h", status="failed"),
    ]
    result = write_submission(pairs, records, tmp_path / "out.csv")
    # Most common predicted label is 0, so the failed row b and the never-predicted row c get 0.
    assert _submission(tmp_path / "out.csv") == ["0", "0", "0", "0"]
    assert (result.rows, result.fallback_label, result.fallback_rows, result.missing_rows) == (4, 0, ["b", "c"], ["c"])
    write_submission(pairs, records, tmp_path / "one.csv", fallback="1")
    assert _submission(tmp_path / "one.csv") == ["0", "1", "1", "0"]
    assert fallback_for([], "majority") == 1
    with pytest.raises(ValueError):
        fallback_for(records, "2")


# ---------------------------------------------------------------- local engine on real trial rows


@pytest.mark.slow
def test_cli_predicts_30_trial_rows_resumably(tmp_path):
    import torch

    data = shared(TRIAL)
    output, submission = tmp_path / "pred.jsonl", tmp_path / "submission.csv"
    threads = torch.get_num_threads()
    runner = CliRunner()
    common = [
        "predict",
        str(data),
        "-o",
        str(output),
        "--submission",
        str(submission),
        "--max-new-tokens",
        "48",
        "--batch-size",
        "15",
        "--threads",
        "1",
        "--no-progress",
        "--max-failed-share",
        "1",
    ]
    try:
        first = runner.invoke(build_app(), common + ["--limit", "12"])
        assert first.exit_code == 0, first.output
        assert len(read_records(output)) == 12
        second = runner.invoke(build_app(), common + ["--limit", "30"])
        assert second.exit_code == 0, second.output
    finally:
        torch.set_num_threads(threads)
    said = " ".join(second.output.split())
    assert "18 written" in said and "12 already" in said

    records = {r.id: r for r in read_records(output)}
    pairs = load_pairs(data, require_labels=False).iloc[:30]
    assert set(records) == set(pairs["id"])
    for record in records.values():
        # Constrained decoding (the default): every answer is the answer schema's JSON.
        assert record.constrained is True and record.status == "ok" and record.predicted_label in (0, 1)
        assert json.loads(record.raw_output)["predicted_label"] == record.predicted_label
        assert record.usage.completion_tokens <= 48
        assert record.label is not None and record.model == "embedded" and record.prompt_version == "ft-v1"
    predictions = _submission(submission)
    assert len(predictions) == 30
    fallback = fallback_for(list(records.values()), "majority")
    expected = [
        str(records[i].predicted_label if records[i].predicted_label is not None else fallback) for i in pairs["id"]
    ]
    assert predictions == expected
    failed = sum(r.predicted_label is None for r in records.values())
    assert f"{failed} got the fallback label {fallback}" in said


@pytest.mark.slow
def test_local_self_consistency_keeps_every_vote(embedded_model_path, tmp_path):
    settings = PredictSettings(max_new_tokens=30, temperature=0.9, num_samples=3, seed=0, batch_size=3)
    import torch

    threads = torch.get_num_threads()
    try:
        result = predict(
            _PAIRS,
            tmp_path / "sc.jsonl",
            backend=f"local:{embedded_model_path}",
            settings=settings,
            progress=False,
            engine_options={"threads": 1},
        )
    finally:
        torch.set_num_threads(threads)
    assert result.written == 3
    records = read_records(tmp_path / "sc.jsonl")
    _check_remote_records(records, samples=3)
    for record in records:
        assert None not in record.votes and record.constrained  # every constrained sample has a label
        expected_share = max(record.votes.count(0), record.votes.count(1)) / 3
        assert record.vote_share == pytest.approx(expected_share, abs=1e-4)
        assert record.model == embedded_model_path


@pytest.mark.slow
def test_no_constrain_turns_constrained_decoding_off(embedded_model_path, tmp_path):
    """--no-constrain: the stored answer is the model's free text, exactly what the engine writes
    without a schema; by default the same rows come back as schema JSON."""
    import torch

    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.local_engine import LocalEngine

    data = shared(TRIAL)
    threads = torch.get_num_threads()
    # Free text from an untrained model rarely parses: the failed share is not what this test is about.
    common = [
        "predict",
        str(data),
        "--model",
        embedded_model_path,
        "--limit",
        "2",
        "--max-new-tokens",
        "24",
        "--threads",
        "1",
        "--no-progress",
        "--max-failed-share",
        "1",
    ]
    try:
        free = CliRunner().invoke(build_app(), common + ["-o", str(tmp_path / "free.jsonl"), "--no-constrain"])
        assert free.exit_code == 0, free.output
        constrained = CliRunner().invoke(build_app(), common + ["-o", str(tmp_path / "json.jsonl")])
        assert constrained.exit_code == 0, constrained.output
        pairs = load_pairs(data, require_labels=False).iloc[:2]
        engine = LocalEngine(embedded_model_path, progress=False)
        plain = engine.generate(
            [prompt_messages(p, h) for p, h in zip(pairs["premise"], pairs["hypothesis"])], max_new_tokens=24
        )
    finally:
        torch.set_num_threads(threads)
    free_records = {r.id: r for r in read_records(tmp_path / "free.jsonl")}
    for row_id, (generation,) in zip(pairs["id"], plain):
        assert free_records[row_id].constrained is False
        assert free_records[row_id].raw_output == generation.text
    for record in read_records(tmp_path / "json.jsonl"):
        assert record.constrained is True and record.raw_output.startswith('{"thought_process": "')
    assert {r.raw_output for r in free_records.values()}.isdisjoint(
        {r.raw_output for r in read_records(tmp_path / "json.jsonl")}
    )


def test_cli_refuses_continuous_batching_with_a_schema(tmp_path):
    result = CliRunner().invoke(
        build_app(), ["predict", str(shared(TRIAL)), "-o", str(tmp_path / "p.jsonl"), "--engine-mode", "continuous"]
    )
    assert result.exit_code == 2
    assert "--no-constrain" in " ".join(result.output.split())
    assert not (tmp_path / "p.jsonl").exists()


# ---------------------------------------------------------------- remote backends against real servers

_PAIRS = pd.DataFrame(
    {
        "id": ["x1", "x2", "x3"],
        "premise": [
            "A man is sleeping on a bench.",
            "Two kids play football in the rain.",
            "The shop is closed today.",
        ],
        "hypothesis": ["A person rests.", "Children are indoors.", "The shop is open today."],
        "label": pd.array([1, 0, 0], dtype="Int64"),
    }
)


def _check_remote_records(records, samples: int):
    assert [r.id for r in sorted(records, key=lambda r: r.id)] == ["x1", "x2", "x3"]
    for record in records:
        assert record.predicted_label in (0, 1) or (record.status == "failed" and record.error)
        assert record.raw_output is not None and record.usage.completion_tokens > 0
        if samples > 1:
            assert len(record.votes) == samples and 0 <= record.vote_share <= 1


@pytest.mark.server
def test_openai_compatible_backend_with_self_consistency(openai_server, embedded_model_path, tmp_path):
    output = tmp_path / "openai.jsonl"
    settings = PredictSettings(max_new_tokens=24, temperature=0.8, num_samples=2, seed=3, concurrency=3)
    result = predict(
        _PAIRS,
        output,
        backend=f"openai:{openai_server.url}/v1#{embedded_model_path}",
        settings=settings,
        progress=False,
    )
    assert result.written == 3
    _check_remote_records(read_records(output), samples=2)
    again = predict(
        _PAIRS,
        output,
        backend=f"openai:{openai_server.url}/v1#{embedded_model_path}",
        settings=settings,
        progress=False,
    )
    assert (again.written, again.already_done) == (0, 3)


@pytest.mark.server
def test_tgi_generate_backend_with_json_grammar(tgi_test_server, embedded_model_path, tmp_path):
    output = tmp_path / "tgi.jsonl"
    settings = PredictSettings(max_new_tokens=40, concurrency=2)
    result = predict(
        _PAIRS, output, backend=f"tgi:{tgi_test_server.url}#{embedded_model_path}", settings=settings, progress=False
    )
    assert result.written == 3
    records = read_records(output)
    _check_remote_records(records, samples=1)
    assert all(r.prompt_version == "ft-v1" for r in records)


# ---------------------------------------------------------------- failures, refusals, one-line errors


def _predict_cli(*args, env=None, timeout=300):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "nli_cot_hub", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def _one_error_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_submission_report_counts_fallback_labels(tmp_path):
    import json

    pairs = pd.DataFrame({"id": ["a", "b", "c", "d"], "premise": "p", "hypothesis": "h", "label": pd.NA})
    records = [
        CoTRecord(id="a", premise="p", hypothesis="h", predicted_label=1),
        CoTRecord(id="b", premise="p", hypothesis="h", predicted_label=0),
        CoTRecord(id="c", premise="p", hypothesis="h", status="failed"),
    ]
    written = write_submission(pairs, records, tmp_path / "sub.csv", max_fallback_share=0.5)
    report = json.loads((tmp_path / "sub.report.json").read_text())
    assert written.report_path == tmp_path / "sub.report.json"
    assert (report["rows"], report["fallback_rows"], report["never_predicted"], report["written"]) == (4, 2, 1, True)
    assert report["fallback_ids"] == ["c", "d"]


def test_submission_of_fallbacks_is_refused_and_the_report_says_why(tmp_path):
    import json

    from nli_cot_hub.predict import SubmissionRefused

    pairs = pd.DataFrame({"id": ["a", "b", "c"], "premise": "p", "hypothesis": "h", "label": pd.NA})
    records = [CoTRecord(id="a", premise="p", hypothesis="h", predicted_label=1)]
    with pytest.raises(SubmissionRefused, match="2 of 3 rows"):
        write_submission(pairs, records, tmp_path / "sub.csv", max_fallback_share=0.5)
    assert not (tmp_path / "sub.csv").exists()
    report = json.loads((tmp_path / "sub.report.json").read_text())
    assert report["written"] is False and report["fallback_rows"] == 2


def test_remote_predict_that_never_parses_exits_1_keeps_records_and_refuses_the_submission(tmp_path):
    from tests.scripted_server import scripted_server

    output, submission = tmp_path / "pred.jsonl", tmp_path / "submission.csv"
    with scripted_server(replies=["I am not sure about this one."]) as server:
        result = _predict_cli(
            shared(TRIAL),
            "-o",
            output,
            "--submission",
            submission,
            "-b",
            f"openai:{server.url}/v1#m",
            "--limit",
            4,
            "--no-progress",
        )
        assert result.returncode == 1
        assert "not written: 4 of 4 rows" in _one_error_line(result)
        assert len(read_records(output)) == 4 and not submission.exists()
        assert (tmp_path / "submission.report.json").exists()
        accepted = _predict_cli(
            shared(TRIAL),
            "-o",
            output,
            "--submission",
            submission,
            "-b",
            f"openai:{server.url}/v1#m",
            "--limit",
            4,
            "--no-progress",
            "--max-failed-share",
            1,
        )
    assert accepted.returncode == 0, accepted.stderr
    assert len(_submission(submission)) == 4 and "4 got the fallback label" in accepted.stderr


def test_remote_predict_against_a_refusing_server_exits_1(tmp_path):
    from tests.scripted_server import refused_url

    output = tmp_path / "pred.jsonl"
    result = _predict_cli(
        shared(TRIAL),
        "-o",
        output,
        "-b",
        f"openai:{refused_url()}/v1#m",
        "--limit",
        3,
        "--max-retries",
        0,
        "--no-progress",
    )
    assert result.returncode == 1
    assert "predict: 3 of 3 records failed" in _one_error_line(result)
    assert len(read_records(output)) == 3


def test_predict_never_writes_onto_its_input_or_another_stages_store(tmp_path):
    from nli_cot_hub.store import RecordStore

    data = tmp_path / "test.csv"
    data.write_bytes(shared(TRIAL).read_bytes())
    refused = _predict_cli(
        data, "-o", tmp_path / "p.jsonl", "--submission", data, "-b", "openai:http://127.0.0.1:9/v1#m"
    )
    assert refused.returncode == 2 and "--submission" in _one_error_line(refused)
    assert data.read_bytes() == shared(TRIAL).read_bytes()

    generated = tmp_path / "cot.jsonl"
    with RecordStore(generated, stage="generate") as store:
        store.append(CoTRecord(id="0", premise="p", hypothesis="h", predicted_label=1))
    before = generated.read_bytes()
    mixed = _predict_cli(data, "-o", generated, "-b", "openai:http://127.0.0.1:9/v1#m", "--limit", 2)
    assert mixed.returncode == 2 and "written by `nli-cot generate`" in _one_error_line(mixed)
    assert generated.read_bytes() == before


def test_predict_setup_errors_are_one_line(tmp_path):
    header_only = tmp_path / "test.csv"
    header_only.write_text("premise,hypothesis\n")
    no_key = {"MISTRAL_API_KEY": ""}
    cases = [
        ([shared(TRIAL), "-o", tmp_path / "a.jsonl", "-b", "foo:bar"], 2, "foo:bar"),
        (
            [shared(TRIAL), "-o", tmp_path / "b.jsonl", "-b", "mistral:open-mistral-7b", "--limit", 1],
            2,
            "MISTRAL_API_KEY",
        ),
        ([shared(TRIAL), "-o", tmp_path / "c.jsonl", "--model", tmp_path / "no-model", "--limit", 1], 2, "no-model"),
        (
            [shared(TRIAL), "-o", tmp_path / "d.jsonl", "--adapter", tmp_path / "no-adapter", "--limit", 1],
            2,
            "no-adapter",
        ),
        ([header_only, "-o", tmp_path / "e.jsonl"], 2, "no data rows"),
        ([shared(TRIAL), "-o", tmp_path, "--limit", 1], 2, "is a folder"),
    ]
    for arguments, code, message in cases:
        result = _predict_cli(*arguments, env=no_key)
        assert result.returncode == code, (arguments, result.stderr[-2000:])
        assert message in _one_error_line(result)


# ---------------------------------------------------------------- the stage config and its function

ANSWER = '{"thought_process": "1. The hypothesis restates the premise.", "predicted_label": 1}'


def test_predict_reads_a_yaml_config_and_a_flag_overrides_it(tmp_path):
    import yaml

    from tests.scripted_server import scripted_server

    output, submission = tmp_path / "from_yaml.jsonl", tmp_path / "submission.csv"
    config_file = tmp_path / "predict.yaml"
    with scripted_server(replies=[ANSWER]) as server:
        config_file.write_text(
            yaml.safe_dump(
                {
                    "data": str(shared(TRIAL)),
                    "output": str(output),
                    "submission": str(submission),
                    "limit": 5,
                    "backend": f"openai:{server.url}/v1#m",
                    "json-mode": "object",
                    "progress": False,
                }
            )
        )
        result = CliRunner().invoke(build_app(), ["predict", "--config", str(config_file), "--limit", "2"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "predict: 2 written {'ok': 2}" in said and f"already in {output}" in said
    assert f"submission: 2 rows -> {submission}; 0 got the fallback label 1; report: " in said
    assert [r.predicted_label for r in read_records(output)] == [1, 1] and _submission(submission) == ["1", "1"]
    # --json-mode from the file reached the server: a JSON object, not the default json_schema
    assert [r["response_format"]["type"] for r in server.requests] == ["json_object"] * 2


def test_run_predict_takes_a_config_object_and_reports_a_refused_submission_as_its_problem(tmp_path):
    import dataclasses

    from tests.scripted_server import scripted_server

    output, submission, stats = tmp_path / "p.jsonl", tmp_path / "s.csv", tmp_path / "speed.json"
    with scripted_server(replies=["I am not sure about this one."]) as server:
        config = PredictConfig(
            data=str(shared(TRIAL)),
            output=str(output),
            submission=str(submission),
            stats=str(stats),
            backend=f"openai:{server.url}/v1#m",
            limit=3,
            progress=False,
        )
        result = run_predict(config)
        assert (result.written, result.failed, result.by_status) == (3, 3, {"failed": 3})
        assert result.submission is None and not submission.exists()
        assert "not written: 3 of 3 rows" in result.problem
        assert result.stats == stats and json.loads(stats.read_text())["written"] == 3
        accepted = run_predict(dataclasses.replace(config, max_failed_share=1.0))
    assert (accepted.written, accepted.already_done, accepted.problem) == (0, 3, None)
    assert accepted.stats is None  # a rerun that measured nothing keeps the earlier speed
    assert accepted.submission.rows == 3 and len(accepted.submission.fallback_rows) == 3
    assert _submission(submission) == ["1", "1", "1"]


def test_predict_config_checks_its_options_on_creation():
    from nli_cot_hub.data import DataError

    with pytest.raises(DataError, match="--fallback-label must be one of"):
        PredictConfig(data="x", fallback_label="2")
    with pytest.raises(DataError, match="--readout must be one of"):
        PredictConfig(data="x", readout="guess")
    config = PredictConfig(data="x", rpm=30, tpm=9000, gen_seed=4, timeout=7)
    assert (config.split, config.max_reasks, config.timeout) == ("test", 0, 7)
    settings = config.settings()
    assert (settings.requests_per_minute, settings.tokens_per_minute, settings.seed, settings.timeout_s) == (
        30,
        9000,
        4,
        7,
    )


def test_a_locked_store_exits_1_and_an_endpoint_without_log_probabilities_exits_2(tmp_path):
    from nli_cot_hub.store import RecordStore

    locked = tmp_path / "locked.jsonl"
    with RecordStore(locked, stage="predict"):
        busy = _predict_cli(shared(TRIAL), "-o", locked, "-b", "openai:http://127.0.0.1:9/v1#m", "--limit", 1)
    assert busy.returncode == 1 and "another process is writing this store" in _one_error_line(busy)
    no_logprobs = _predict_cli(
        shared(TRIAL),
        "-o",
        tmp_path / "l.jsonl",
        "-b",
        "mistral:http://127.0.0.1:9#m",
        "--readout",
        "logprob",
        "--completion-format",
        "label_only",
        "--limit",
        1,
        env={"MISTRAL_API_KEY": "not-a-key"},
    )
    assert no_logprobs.returncode == 2
    assert "--readout logprob: the mistral backend returns no log-probabilities" in _one_error_line(no_logprobs)


@pytest.mark.slow
def test_a_token_cap_too_small_for_the_schema_exits_2(tmp_path):
    result = _predict_cli(
        shared(TRIAL), "-o", tmp_path / "p.jsonl", "--max-new-tokens", 2, "--limit", 1, "--threads", 1, "--no-progress"
    )
    assert result.returncode == 2 and "too small" in _one_error_line(result)
