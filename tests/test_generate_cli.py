"""``nli-cot generate | reflect | judge | rationales`` end to end, as subprocesses, against real servers."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nli_cot_hub.data import load_pairs
from nli_cot_hub.extract import extract_answer
from nli_cot_hub.generate import tidy_explanation
from nli_cot_hub.store import RecordStore, read_records
from tests.conftest import shared
from tests.servers import fault_proxy, proxy_counts

NLI_COT = [sys.executable, "-m", "nli_cot_hub"]
TRIAL = "comp34812_nli/trial_jd0g.csv"
# Small replies keep the embedded model quick; the tests are about the plumbing, not the answers
# (12-token replies seldom parse, so every failure share is accepted here).
FAST = ["--max-new-tokens", "12", "--max-reasks", "1", "--no-progress", "--max-failed-share", "1"]


def nli_cot(*args, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*NLI_COT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def lines_of(path: Path) -> list[dict]:
    """Every line must be a whole JSON record: no corrupt line anywhere."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def trial_ids(limit: int) -> list[str]:
    return load_pairs(shared(TRIAL))["id"].tolist()[:limit]


def assert_status_matches_output(record) -> None:
    """The stored status is what the parser makes of the stored reply."""
    if record.status == "ok":
        assert record.thought_process and record.predicted_label in (0, 1) and record.raw_output is None
    else:
        assert record.raw_output is not None or record.error.startswith("request failed")
        if record.raw_output is not None:
            assert extract_answer(record.raw_output).status == record.status


@pytest.fixture(scope="module")
def generated(openai_server, embedded_model_path, tmp_path_factory):
    """Six trial rows generated through a proxy that injects 429s, 500s and dropped connections
    (stalls cut by the request timeout are tested in test_engine, where one request is in flight)."""
    output = tmp_path_factory.mktemp("generate") / "cot.jsonl"
    with fault_proxy(openai_server.url, "ok,429,ok,500,drop,ok") as proxy:
        result = nli_cot(
            "generate",
            shared(TRIAL),
            "-o",
            output,
            "-b",
            f"openai:{proxy.url}/v1#{embedded_model_path}",
            "--limit",
            6,
            "--concurrency",
            3,
            *FAST,
        )
        counts = proxy_counts(proxy)
    return output, result, counts


@pytest.mark.server
def test_generate_survives_injected_faults(generated):
    output, result, counts = generated
    assert all(counts.get(action, 0) >= 1 for action in ("429", "500", "drop", "ok"))
    records = read_records(output)
    assert sorted(r.id for r in records) == sorted(trial_ids(6))  # every id exactly once
    assert len(lines_of(output)) == 6
    for record in records:
        assert record.source == "original" and record.prompt_version == "cot-v1"
        assert record.usage.prompt_tokens > 0 and record.reask_count in (0, 1)
        assert not (record.error or "").startswith("request failed")  # retries absorbed every fault
        assert_status_matches_output(record)
    ledger = json.loads(output.with_name("cot.jsonl.ledger.json").read_text())
    [model_counts] = ledger.values()
    assert model_counts["retries"] >= 4 and model_counts["prompt_tokens"] == sum(
        r.usage.prompt_tokens for r in records
    )
    assert "generate: 6 written" in result.stderr


@pytest.mark.server
def test_rerun_skips_finished_ids(generated, openai_server, embedded_model_path):
    output, _, _ = generated
    before = output.read_bytes()
    result = nli_cot(
        "generate",
        shared(TRIAL),
        "-o",
        output,
        "-b",
        f"openai:{openai_server.url}/v1#{embedded_model_path}",
        "--limit",
        6,
        *FAST,
    )
    assert output.read_bytes() == before
    assert "0 written" in result.stderr and "6 already in" in result.stderr


@pytest.mark.server
def test_kill_9_at_random_points_loses_and_duplicates_nothing(openai_server, embedded_model_path, tmp_path):
    output = tmp_path / "cot.jsonl"
    rows = 6
    command = [
        *NLI_COT,
        "generate",
        str(shared(TRIAL)),
        "-o",
        str(output),
        "-b",
        f"openai:{openai_server.url}/v1#{embedded_model_path}",
        "--limit",
        str(rows),
        "--concurrency",
        "2",
        "--max-new-tokens",
        "8",
        "--max-reasks",
        "0",
        "--no-progress",
        "--max-failed-share",
        "1",
    ]
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        already = len(read_records(output))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for fresh progress, then kill at a random moment while requests are in flight.
        deadline = time.monotonic() + 180
        while process.poll() is None and len(read_records(output)) == already and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0, 0.8))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        lines_of_whole = output.read_text().split("\n")[:-1]
        assert all(json.loads(line) for line in lines_of_whole)  # whole lines parse; a torn tail may follow
        ids = [r.id for r in read_records(output)]
        assert len(ids) == len(set(ids))
    assert kills >= 2
    nli_cot(*command[len(NLI_COT) :])
    records = lines_of(output)
    assert sorted(r["id"] for r in records) == sorted(trial_ids(rows))
    with RecordStore(output) as store:
        assert store.torn_bytes == 0 and len(store) == rows


@pytest.mark.server
def test_reflect_only_wrong_predictions(generated, openai_server, embedded_model_path, tmp_path):
    output, _, _ = generated
    wrong = [r for r in read_records(output) if r.predicted_label != r.label]
    assert wrong  # 12-token replies cannot hold a whole answer, so there is always something to reflect on
    reflected = tmp_path / "reflected.jsonl"
    nli_cot(
        "reflect",
        output,
        "-o",
        reflected,
        "-b",
        f"openai:{openai_server.url}/v1#{embedded_model_path}",
        "--limit",
        3,
        *FAST,
    )
    records = read_records(reflected)
    assert sorted(r.id for r in records) == sorted(r.id for r in wrong[:3])  # in input order, finished in any
    for record in records:
        assert record.source == "reflected" and record.prompt_version == "reflect-v1"
        if record.status in ("ok", "repaired"):
            assert record.predicted_label == record.label and record.error_analysis and record.thought_process
        else:
            assert record.error


@pytest.mark.server
def test_reflect_with_schema_constrained_server_reaches_the_true_label(llama_server, tmp_path):
    source = tmp_path / "cot.jsonl"
    pairs = load_pairs(shared(TRIAL)).head(2)
    with RecordStore(source) as store:
        from nli_cot_hub.records import CoTRecord

        for row in pairs.to_dict("records"):
            store.append(
                CoTRecord(
                    id=row["id"],
                    premise=row["premise"],
                    hypothesis=row["hypothesis"],
                    label=int(row["label"]),
                    thought_process="1. A guess.",
                    predicted_label=1 - int(row["label"]),
                )
            )
    reflected = tmp_path / "reflected.jsonl"
    nli_cot(
        "reflect",
        source,
        "-o",
        reflected,
        "-b",
        f"llamacpp:{llama_server.url}/v1#embedded",
        "--max-new-tokens",
        160,
        "--max-reasks",
        1,
        "--concurrency",
        1,
        "--no-progress",
        "--max-failed-share",
        1,
    )
    records = read_records(reflected)
    assert len(records) == 2
    for record in records:
        assert record.predicted_label == record.label  # the per-pair schema admits only the true label
        assert record.status in ("ok", "failed")
        if record.status == "ok":
            assert record.error_analysis and record.thought_process


@pytest.mark.server
def test_judge_adds_scores_or_a_recorded_failure(openai_server, embedded_model_path, tmp_path):
    human = tmp_path / "human.jsonl"
    nli_cot("rationales", shared("esnli/dev"), "-o", human, "--limit", 2)
    judged = tmp_path / "judged.jsonl"
    nli_cot("judge", human, "-o", judged, "-b", f"openai:{openai_server.url}/v1#{embedded_model_path}", *FAST)
    originals = read_records(human)
    records = sorted(read_records(judged), key=lambda r: [r.id for r in originals].index(r.id))
    assert [r.id for r in records] == [r.id for r in originals] and len(records) == 2
    for record, original in zip(records, originals):
        assert record.model_dump(exclude={"judge", "stage"}) == original.model_dump(exclude={"judge", "stage"})
        assert (original.stage, record.stage) == ("rationales", "judge")
        assert record.judge["prompt_version"] == "judge-v1" and record.judge["status"] in ("ok", "failed")
        assert record.judge["usage"]["prompt_tokens"] > 0
        if record.judge["status"] == "ok":
            assert all(1 <= record.judge[name] <= 5 for name in ("coherence", "correctness", "brevity"))
        else:
            assert record.judge["error"] and record.judge["raw_output"] is not None


def test_human_rationales_from_esnli(tmp_path):
    folder = shared("esnli/dev")
    output = tmp_path / "human.jsonl"
    nli_cot("rationales", folder, "-o", output, "--limit", 20)
    records = read_records(output)
    raw_labels = (folder / "labels.dev").read_text().split("\n")
    explanations = (folder / "preproc1_expl_1.dev").read_text().split("\n")
    assert len(records) == 20
    for record in records:
        line = int(record.id)
        assert raw_labels[line] != "neutral"
        assert record.label == (1 if raw_labels[line] == "entailment" else 0) == record.predicted_label
        assert record.source == "human" and record.status == "ok"
        first_letter = next(char for char in record.thought_process if char.isalpha())
        assert first_letter.isupper() and record.thought_process.rstrip('"').endswith((".", "!", "?"))
        assert letters(record.thought_process) == letters(explanations[line])  # only spacing and case differ
    again = nli_cot("rationales", folder, "-o", output, "--limit", 20)
    assert "0 written, 20 already" in again.stderr


@pytest.mark.parametrize(
    "raw, tidy",
    [
        ("`` waxing '' is a rephrasing of `` waxing a floor . ''", '"Waxing" is a rephrasing of "waxing a floor."'),
        ("the man is n't outside , so he ca n't be there", "The man isn't outside, so he can't be there."),
        ("a dog ( a pet ) runs", "A dog (a pet) runs."),
    ],
)
def test_tidy_explanation_undoes_tokenisation(raw, tidy):
    assert tidy_explanation(raw) == tidy


def test_bad_input_is_one_line_naming_file_and_column(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("premise,label\nA man sleeps.,1\n")
    result = nli_cot("generate", bad, "-o", tmp_path / "cot.jsonl", "-b", "local:embedded", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "pairs.csv" in result.stderr and "'hypothesis'" in result.stderr
    assert not (tmp_path / "cot.jsonl").exists() or read_records(tmp_path / "cot.jsonl") == []


@pytest.mark.server
def test_rejected_key_stops_the_run_and_is_never_printed(openai_server, embedded_model_path, tmp_path):
    secret = "sk-test-do-not-print-4242"
    with fault_proxy(openai_server.url, "401") as proxy:
        result = nli_cot(
            "generate",
            shared(TRIAL),
            "-o",
            tmp_path / "cot.jsonl",
            "-b",
            f"mistral:{proxy.url}#{embedded_model_path}",
            "--limit",
            3,
            "--no-progress",
            env={"MISTRAL_API_KEY": secret},
            check=False,
        )
    assert result.returncode == 1 and "HTTP 401" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert read_records(tmp_path / "cot.jsonl") == []
    assert secret not in "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())


def test_missing_api_key_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MISTRAL_API_KEY"}
    result = subprocess.run(
        [*NLI_COT, "generate", str(shared(TRIAL)), "-o", str(tmp_path / "c.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and "MISTRAL_API_KEY" in result.stderr


# ---------------------------------------------------------------- a failed run never passes for a success

TRIAL_IDS = 3
QUICK_FAIL = ["--limit", TRIAL_IDS, "--max-retries", 0, "--no-progress"]


def assert_failed_run(result, output: Path, stage: str = "generate", count: int = TRIAL_IDS) -> None:
    """Exit code 1, a summary naming the first error, and every record kept."""
    assert result.returncode == 1, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and f"{stage}: {count} of {count} records failed" in error_lines[0]
    assert "first error: " in error_lines[0] and "Traceback" not in result.stderr
    assert len(lines_of(output)) == count


def test_generate_against_a_refusing_backend_exits_1_and_keeps_records(tmp_path):
    from tests.scripted_server import refused_url

    output = tmp_path / "cot.jsonl"
    result = nli_cot(
        "generate", shared(TRIAL), "-o", output, "-b", f"openai:{refused_url()}/v1#m", *QUICK_FAIL, check=False
    )
    assert_failed_run(result, output)
    assert all(r.status == "failed" and r.error.startswith("request failed") for r in read_records(output))


def test_generate_against_a_501_server_exits_1(tmp_path):
    from tests.scripted_server import scripted_server

    output = tmp_path / "cot.jsonl"
    with scripted_server(status=501, body='{"error": {"message": "chat completions not implemented"}}') as server:
        result = nli_cot(
            "generate", shared(TRIAL), "-o", output, "-b", f"openai:{server.url}/v1#m", *QUICK_FAIL, check=False
        )
    assert_failed_run(result, output)
    assert "HTTP 501" in result.stderr


def test_generate_against_a_silent_server_times_out_says_it_waits_and_exits_1(tmp_path):
    from tests.scripted_server import scripted_server

    output = tmp_path / "cot.jsonl"
    with scripted_server(silent=True) as server:
        result = nli_cot(
            "generate",
            shared(TRIAL),
            "-o",
            output,
            "-b",
            f"openai:{server.url}/v1#m",
            "--limit",
            2,
            "--max-retries",
            1,
            "--timeout",
            1,
            "--progress",
            check=False,
            timeout=120,
        )
    assert_failed_run(result, output, count=2)
    assert "waiting" in result.stderr and "no answer within 1 s" in result.stderr


def test_a_typo_in_the_local_model_exits_1(tmp_path):
    output = tmp_path / "cot.jsonl"
    result = nli_cot(
        "generate",
        shared(TRIAL),
        "-o",
        output,
        "-b",
        "local:embeded",
        *QUICK_FAIL,
        env={"HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert_failed_run(result, output)
    assert "embeded" in result.stderr


def test_mistral_client_against_a_refusing_server_exits_1(tmp_path):
    from tests.scripted_server import refused_url

    output = tmp_path / "cot.jsonl"
    result = nli_cot(
        "generate",
        shared(TRIAL),
        "-o",
        output,
        "-b",
        f"mistral:{refused_url()}#m",
        *QUICK_FAIL,
        env={"MISTRAL_API_KEY": "test-key-123456"},
        check=False,
    )
    assert_failed_run(result, output)


def test_failed_share_threshold_is_an_option(tmp_path):
    from tests.scripted_server import refused_url

    output = tmp_path / "cot.jsonl"
    result = nli_cot(
        "generate",
        shared(TRIAL),
        "-o",
        output,
        "-b",
        f"openai:{refused_url()}/v1#m",
        *QUICK_FAIL,
        "--max-failed-share",
        1,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "{'failed': 3}" in result.stderr and len(lines_of(output)) == 3


def test_a_key_echoed_by_the_server_is_never_printed_or_stored(tmp_path):
    from tests.scripted_server import scripted_server

    secret = "sk-echoed-secret-0042"
    output = tmp_path / "cot.jsonl"
    with scripted_server(status=400, body=f'{{"error": {{"message": "bad request for key {secret}"}}}}') as server:
        result = nli_cot(
            "generate",
            shared(TRIAL),
            "-o",
            output,
            "-b",
            f"openai:{server.url}/v1#m",
            *QUICK_FAIL,
            env={"OPENAI_API_KEY": secret},
            check=False,
        )
    assert result.returncode == 1 and "bad request for key ***" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert secret not in output.read_text() and "***" in output.read_text()


def labelled_store(path: Path, rows: int = 3, wrong: bool = True) -> list[str]:
    """Real trial pairs with a thought and a (wrong or right) prediction, as `generate` writes them."""
    from nli_cot_hub.records import CoTRecord

    pairs = load_pairs(shared(TRIAL)).head(rows)
    with RecordStore(path, stage="generate") as store:
        for row in pairs.to_dict("records"):
            gold = int(row["label"])
            store.append(
                CoTRecord(
                    id=row["id"],
                    premise=row["premise"],
                    hypothesis=row["hypothesis"],
                    label=gold,
                    thought_process="Step 1: compare the two sentences.",
                    predicted_label=1 - gold if wrong else gold,
                )
            )
    return pairs["id"].tolist()


JUDGEMENT = json.dumps(
    {
        "analysis": "The thought compares the sentences but skips the key word.",
        "coherence": 4,
        "correctness": 3,
        "brevity": 5,
    }
)


def test_judge_accepts_an_answer_without_the_optional_improved_thought(tmp_path):
    from tests.scripted_server import scripted_server

    source, judged = tmp_path / "cot.jsonl", tmp_path / "judged.jsonl"
    ids = labelled_store(source)
    with scripted_server(replies=[JUDGEMENT]) as server:
        result = nli_cot("judge", source, "-o", judged, "-b", f"openai:{server.url}/v1#m", "--no-progress")
    assert "judge: 3 written ({'ok': 3})" in result.stderr
    records = read_records(judged)
    assert sorted(r.id for r in records) == sorted(ids)
    for record in records:
        assert record.judge["status"] == "ok" and record.judge["improved_thought_process"] is None
        assert (record.judge["coherence"], record.judge["correctness"], record.judge["brevity"]) == (4, 3, 5)
        assert record.stage == "judge"


def test_judge_counts_failed_judgements_as_failed(tmp_path):
    from tests.scripted_server import scripted_server

    source, judged = tmp_path / "cot.jsonl", tmp_path / "judged.jsonl"
    labelled_store(source)
    with scripted_server(replies=["I would rate this thought as fairly good overall."]) as server:
        result = nli_cot(
            "judge",
            source,
            "-o",
            judged,
            "-b",
            f"openai:{server.url}/v1#m",
            "--max-reasks",
            0,
            "--no-progress",
            check=False,
        )
    assert "judge: 3 written ({'failed': 3})" in result.stderr
    assert_failed_run(result, judged, stage="judge")
    assert all(r.judge["status"] == "failed" for r in read_records(judged))


@pytest.mark.parametrize("stage", ["reflect", "judge"])
def test_reflect_and_judge_refuse_a_missing_input_and_create_nothing(stage, tmp_path):
    output = tmp_path / "out.jsonl"
    result = nli_cot(
        stage, tmp_path / "absent.jsonl", "-o", output, "-b", "openai:http://127.0.0.1:9/v1#m", check=False
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "absent.jsonl" in result.stderr and not output.exists()


def test_reflect_says_why_it_has_nothing_to_do(tmp_path):
    source = tmp_path / "cot.jsonl"
    labelled_store(source, wrong=False)
    result = nli_cot("reflect", source, "-o", tmp_path / "reflected.jsonl", "-b", "openai:http://127.0.0.1:9/v1#m")
    assert "0 written" in result.stderr
    assert "none of the 3 labelled records" in result.stderr and "--all" in result.stderr


def test_output_onto_the_input_is_refused_and_the_input_kept(tmp_path):
    data = tmp_path / "pairs.csv"
    data.write_bytes(shared(TRIAL).read_bytes())
    result = nli_cot("generate", data, "-o", data, "-b", "openai:http://127.0.0.1:9/v1#m", check=False)
    assert result.returncode == 2 and "is an input" in result.stderr
    assert data.read_bytes() == shared(TRIAL).read_bytes()
    store = tmp_path / "cot.jsonl"
    labelled_store(store)
    before = store.read_bytes()
    for stage in ("reflect", "judge"):
        result = nli_cot(
            stage, store, "-o", tmp_path / "." / "cot.jsonl", "-b", "openai:http://127.0.0.1:9/v1#m", check=False
        )
        assert result.returncode == 2 and "is an input" in result.stderr
    assert store.read_bytes() == before


def test_a_store_of_another_stage_is_refused(tmp_path):
    store = tmp_path / "cot.jsonl"
    labelled_store(store)
    before = store.read_bytes()
    result = nli_cot("rationales", shared("esnli/dev"), "-o", store, "--limit", 2, check=False)
    assert result.returncode == 2 and "written by `nli-cot generate`" in result.stderr
    assert store.read_bytes() == before


def test_header_only_csv_and_folder_paths_are_one_line_errors(tmp_path):
    header_only = tmp_path / "pairs.csv"
    header_only.write_text("premise,hypothesis,label\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    store = tmp_path / "cot.jsonl"
    labelled_store(store)
    backend = ["-b", "openai:http://127.0.0.1:9/v1#m"]
    cases = [
        (["generate", header_only, "-o", tmp_path / "a.jsonl", *backend], "no data rows"),
        (["reflect", folder, "-o", tmp_path / "b.jsonl", *backend], "is a folder"),
        (["judge", folder, "-o", tmp_path / "c.jsonl", *backend], "is a folder"),
        (["generate", shared(TRIAL), "-o", folder, *backend], "is a folder"),
        (["reflect", store, "-o", folder, *backend], "is a folder"),
        (["judge", store, "-o", folder, *backend], "is a folder"),
        (["rationales", shared("esnli/dev"), "-o", folder], "is a folder"),
    ]
    for arguments, message in cases:
        result = nli_cot(*arguments, check=False)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
        assert message in result.stderr


@pytest.mark.slow
def test_local_backend_constrains_every_stage_unless_told_not_to(tmp_path):
    """local:embedded decodes each stage's answer to its schema: generated records parse, reflections
    reach the gold label, judgements have their scores; --no-constrain stores the free text."""
    from nli_cot_hub import prompts

    cot, reflected, judged = tmp_path / "cot.jsonl", tmp_path / "reflected.jsonl", tmp_path / "judged.jsonl"
    local = ["-b", "local:embedded", "--max-reasks", "0", "--no-progress"]
    one_thread = {"OMP_NUM_THREADS": "1"}  # two torch threads on a busy 2-core machine crawl
    nli_cot("generate", shared(TRIAL), "-o", cot, "--limit", 2, "--max-new-tokens", 32, *local, env=one_thread)
    records = read_records(cot)
    assert len(records) == 2
    for record in records:
        assert record.constrained is True and record.status == "ok" and record.predicted_label in (0, 1)
    nli_cot("reflect", cot, "-o", reflected, "--all", "--limit", 1, "--max-new-tokens", 48, *local, env=one_thread)
    (reflection,) = read_records(reflected)
    assert reflection.constrained is True and reflection.predicted_label == reflection.label
    nli_cot("judge", cot, "-o", judged, "--limit", 1, "--max-new-tokens", 64, *local, env=one_thread)
    (judgement,) = read_records(judged)
    verdict = judgement.judge
    assert verdict["constrained"] is True and verdict["status"] == "ok" and verdict["analysis"]
    assert all(verdict[score] in range(1, 6) for score in prompts.JUDGE_SCORES)

    free = tmp_path / "free.jsonl"
    nli_cot(
        "generate",
        shared(TRIAL),
        "-o",
        free,
        "--limit",
        1,
        "--max-new-tokens",
        8,
        "--no-constrain",
        "--max-failed-share",  # 8 free tokens cannot hold an answer: the record is kept as failed
        1,
        *local,
        env=one_thread,
    )
    (record,) = read_records(free)
    assert record.constrained is False and record.usage.completion_tokens <= 8

    too_small = nli_cot(
        "reflect",
        cot,
        "-o",
        tmp_path / "r2.jsonl",
        "--all",
        "--max-new-tokens",
        10,
        *local,
        check=False,
        env=one_thread,
    )
    assert too_small.returncode == 1
    assert "budget of 10 new tokens is too small for nli_reflection" in too_small.stderr
    assert read_records(tmp_path / "r2.jsonl") == []
