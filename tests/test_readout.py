"""Log-probability label read-out (nli_cot_hub/readout.py and predict --readout logprob) on the embedded model,
an answer-first LoRA adapter, the TGI-protocol test server and transformers serve."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from nli_cot_hub.readout import LabelScore, label_from_token_alternatives, probability_of_one
from nli_cot_hub.shared_prefix import shared_prefix_length
from tests.conftest import shared

TRIAL = "comp34812_nli/trial_jd0g.csv"


def trial_pairs(rows: int) -> pd.DataFrame:
    from nli_cot_hub.data import load_pairs

    return load_pairs(shared(TRIAL)).iloc[:rows]


def test_two_label_probabilities_sum_to_one_and_pick_the_larger():
    for zero, one in ((-0.1, -2.3), (-7.0, -0.001), (-40.0, -41.0), (-math.inf, -3.0)):
        p_one = probability_of_one(zero, one)
        p_zero = probability_of_one(one, zero)
        assert p_one + p_zero == pytest.approx(1.0)
        assert LabelScore(zero, one).label == int(one > zero) == int(p_one > 0.5)
    assert probability_of_one(math.log(0.2), math.log(0.6)) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        probability_of_one(-math.inf, -math.inf)


def test_endpoint_tokens_give_the_label_position():
    tokens = ['{"', "predicted", "_label", '":', " ", "1", ",", ' "explanation": "0 is wrong"}']
    alternatives = [{}, {}, {}, {}, {}, {"1": -0.2, "0": -1.8, "2": -4.0}, {}, {}]
    score = label_from_token_alternatives(tokens, alternatives)
    assert (score.logprob_0, score.logprob_1, score.label) == (-1.8, -0.2, 1)
    only_one = label_from_token_alternatives(tokens, [{}, {}, {}, {}, {}, {" 1": -0.1}, {}, {}])
    assert only_one.p_label_1 == 1.0
    with pytest.raises(ValueError, match="no predicted_label value"):
        label_from_token_alternatives(["I think", " yes"], [{}, {}])


@pytest.mark.slow
@pytest.mark.parametrize("same_format", [False, True])
def test_batched_left_padded_scores_equal_one_forward_per_sequence(embedded_model_path, same_format):
    import torch

    from nli_cot_hub.formats import prompt_messages
    from nli_cot_hub.local_engine import LocalEngine
    from nli_cot_hub.readout import label_split, score_labels

    torch.set_num_threads(1)
    engine = LocalEngine("embedded", progress=False, threads=1)
    pairs = trial_pairs(3)
    splits = []
    formats = (
        ("label_first", None),
        ("label_only", None),
        ("thought_first", "A long thought: the premise says so, 1 or 0?"),
    )
    for completion_format, thought in formats[:1] if same_format else formats:
        for premise, hypothesis in zip(pairs["premise"], pairs["hypothesis"]):
            context = engine.prompt_text(prompt_messages(premise, hypothesis, completion_format))
            splits.append(label_split(engine.tokenizer, context, completion_format, thought))
    assert {engine.tokenizer.decode([zero]) for _, zero, _ in splits} == {"0"}
    # One format's rows share their system prompt, computed once; the three formats' rows share little.
    assert (shared_prefix_length([prefix for prefix, _, _ in splits]) > 20) == same_format
    batched = score_labels(engine.model, engine.tokenizer, splits, batch_size=2 if same_format else 4)
    for (prefix, zero, one), score in zip(splits, batched):
        with torch.inference_mode():
            alone = torch.log_softmax(engine.model(input_ids=torch.tensor([prefix])).logits[0, -1].float(), dim=-1)
        assert score.logprob_0 == pytest.approx(float(alone[zero]), abs=1e-3)
        assert score.logprob_1 == pytest.approx(float(alone[one]), abs=1e-3)


@pytest.fixture(scope="module")
def answer_first_adapter(embedded_model_path, tmp_path_factory):
    """A small random LoRA on the embedded model, recorded as a label_first adapter (as train.py writes it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nli_cot_hub.formats import write_format

    folder = tmp_path_factory.mktemp("label-first") / "adapter"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_path)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_model_path).save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "embedded"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    write_format(folder, "label_first")
    return folder


@pytest.mark.slow
def test_readout_on_an_answer_first_adapter_agrees_with_greedy_generation(answer_first_adapter, tmp_path):
    from nli_cot_hub.formats import answer_prefix, prompt_messages
    from nli_cot_hub.local_engine import LocalEngine
    from nli_cot_hub.predict import PredictSettings, predict
    from nli_cot_hub.readout import continue_texts
    from nli_cot_hub.store import read_records

    pairs = trial_pairs(6)
    options = {"threads": 1}
    output = tmp_path / "logprob.jsonl"
    predict(
        pairs,
        output,
        model=str(answer_first_adapter),
        progress=False,
        engine_options=options,
        settings=PredictSettings(readout="logprob", max_new_tokens=8, batch_size=3),
    )
    records = {r.id: r for r in read_records(output)}
    assert len(records) == 6
    # Every row computed whole (--no-share-prefix) gives the same labels and probabilities.
    whole = tmp_path / "whole_rows.jsonl"
    predict(
        pairs,
        whole,
        model=str(answer_first_adapter),
        progress=False,
        engine_options={**options, "share_prefix": False},
        settings=PredictSettings(readout="logprob", max_new_tokens=8, batch_size=3),
    )
    for record in read_records(whole):
        assert record.predicted_label == records[record.id].predicted_label
        assert record.p_label_1 == pytest.approx(records[record.id].p_label_1, abs=1e-4)
    for record in records.values():  # every row has a label and its probability, no parse failure
        assert record.predicted_label == int(record.p_label_1 > 0.5) and 0 <= record.p_label_1 <= 1
        assert record.prompt_version == "ft-v1/label_first"  # the format came from the adapter folder
        assert record.thought_process is None and record.status == "label-only"
    # Greedy generation from the same answer prefix takes the same label wherever it writes a label digit.
    engine = LocalEngine(str(answer_first_adapter), progress=False, threads=1)
    texts = [
        engine.prompt_text(prompt_messages(p, h, "label_first")) + answer_prefix("label_first")
        for p, h in zip(pairs["premise"], pairs["hypothesis"])
    ]
    greedy = continue_texts(engine.model, engine.tokenizer, texts, 2, engine.eos_ids)
    # The prompt start the texts share is computed once; the continuations are those of the whole texts.
    longer = [
        continue_texts(engine.model, engine.tokenizer, texts, 10, engine.eos_ids, 4, share_prefix=share)
        for share in (True, False)
    ]
    assert longer[0] == longer[1] and any(text.strip() for text in longer[0])
    digits = {str(row_id): text.strip()[:1] for row_id, text in zip(pairs["id"], greedy)}
    compared = [row_id for row_id, digit in digits.items() if digit in ("0", "1")]
    assert len(compared) >= 3
    for row_id in compared:
        assert records[row_id].predicted_label == int(digits[row_id])

    # --explain writes the explanation after the chosen label; generation read-out still works on the adapter.
    explained = tmp_path / "explained.jsonl"
    predict(
        pairs.iloc[:2],
        explained,
        model=str(answer_first_adapter),
        progress=False,
        engine_options=options,
        settings=PredictSettings(readout="logprob", explain=True, max_new_tokens=12),
    )
    for record in read_records(explained):
        assert record.predicted_label == records[record.id].predicted_label
        assert record.raw_output.startswith(f'{{"predicted_label": {record.predicted_label}, "explanation": ')
    generated = tmp_path / "generated.jsonl"
    # (24 tokens: decoding constrained to the label_first schema needs room to close even an empty answer)
    predict(
        pairs.iloc[:2],
        generated,
        model=str(answer_first_adapter),
        progress=False,
        engine_options=options,
        settings=PredictSettings(max_new_tokens=24),
    )
    assert all(r.prompt_version == "ft-v1/label_first" and r.p_label_1 is None for r in read_records(generated))
    assert all(r.constrained and r.predicted_label in (0, 1) for r in read_records(generated))


@pytest.mark.slow
def test_cli_logprob_readout_on_thought_first_generates_then_reads_every_label(tmp_path):
    import subprocess
    import sys

    from nli_cot_hub.store import read_records

    output, stats = tmp_path / "tf.jsonl", tmp_path / "stats.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "predict",
            str(shared(TRIAL)),
            "--limit",
            "3",
            "--readout",
            "logprob",
            "--max-new-tokens",
            "16",
            "--threads",
            "1",
            "-o",
            str(output),
            "--stats",
            str(stats),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    records = read_records(output)
    assert len(records) == 3 and all(r.predicted_label in (0, 1) and r.p_label_1 is not None for r in records)
    assert all(r.prompt_version == "ft-v1" for r in records)
    speed = json.loads(stats.read_text())
    assert speed["written"] == 3 and speed["examples_per_second"] > 0
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "predict",
            str(shared(TRIAL)),
            "--limit",
            "3",
            "--readout",
            "logprob",
            "--max-new-tokens",
            "16",
            "--threads",
            "1",
            "-o",
            str(output),
            "--stats",
            str(stats),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0 and "0 written" in again.stderr + again.stdout
    assert json.loads(stats.read_text()) == speed  # a rerun with nothing to do keeps the measured speed
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "predict",
            str(shared(TRIAL)),
            "--limit",
            "1",
            "--readout",
            "logprob",
            "--prompt",
            "cot",
            "-o",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--readout logprob" in bad.stderr


@pytest.mark.server
def test_tgi_endpoint_readout_uses_top_n_tokens(tgi_test_server, embedded_model_path, tmp_path):
    from nli_cot_hub.predict import PredictSettings, predict
    from nli_cot_hub.store import read_records

    output = tmp_path / "tgi.jsonl"
    settings = PredictSettings(readout="logprob", completion_format="label_only", max_new_tokens=12, concurrency=2)
    result = predict(
        trial_pairs(4),
        output,
        backend=f"tgi:{tgi_test_server.url}#{embedded_model_path}",
        settings=settings,
        progress=False,
    )
    assert result.written == 4
    records = {r.id: r for r in read_records(output)}
    # The same read-out in process on the same model: TGI's top_n_tokens give the same probabilities.
    local = tmp_path / "local.jsonl"
    predict(
        trial_pairs(4),
        local,
        settings=PredictSettings(readout="logprob", completion_format="label_only"),
        progress=False,
        engine_options={"threads": 1},
    )
    for record in read_records(local):
        remote = records[record.id]
        assert remote.predicted_label == record.predicted_label == int(remote.p_label_1 > 0.5)
        assert remote.p_label_1 == pytest.approx(record.p_label_1, abs=1e-3)
        assert remote.prompt_version == "ft-v1/label_only" and remote.status == "label-only"


@pytest.mark.server
def test_endpoint_without_logprobs_stops_with_one_error_naming_the_option(
    openai_server, embedded_model_path, tmp_path
):
    from nli_cot_hub.predict import PredictSettings, ReadoutUnsupported, predict

    settings = PredictSettings(readout="logprob", completion_format="label_only", max_new_tokens=8)
    with pytest.raises(ReadoutUnsupported, match="--readout logprob"):
        predict(
            trial_pairs(3),
            tmp_path / "o.jsonl",
            backend=f"openai:{openai_server.url}/v1#{embedded_model_path}",
            settings=settings,
            progress=False,
        )


@pytest.mark.slow
def test_multitask_explains_on_demand_with_its_explain_task(answer_first_adapter, tmp_path):
    import shutil

    from nli_cot_hub.formats import write_format
    from nli_cot_hub.predict import PredictSettings, predict
    from nli_cot_hub.store import read_records

    adapter = tmp_path / "multitask"
    shutil.copytree(answer_first_adapter, adapter)
    write_format(adapter, "multitask")
    pairs, options = trial_pairs(2), {"threads": 1}
    for readout in ("generate", "logprob"):
        plain, explained = tmp_path / f"{readout}.jsonl", tmp_path / f"{readout}_explained.jsonl"
        for output, explain in ((plain, False), (explained, True)):
            predict(
                pairs,
                output,
                model=str(adapter),
                progress=False,
                engine_options=options,
                settings=PredictSettings(readout=readout, explain=explain, max_new_tokens=24),
            )  # room to close a constrained answer
        without, with_rationale = read_records(plain), read_records(explained)
        assert all(r.prompt_version == "ft-v1/multitask" for r in without + with_rationale)
        # The [label] task alone carries no rationale; --explain asks the [explain] task for one.
        assert all(r.thought_process is None for r in without)
        assert all(r.thought_process for r in with_rationale)
        assert [r.predicted_label for r in without] == [r.predicted_label for r in with_rationale]
        if readout == "logprob":
            assert all(r.status == "ok" and r.p_label_1 is not None for r in with_rationale)
