"""``nli-cot train|merge|card``: train and push the adapter + card to the Hub-protocol server, load it back
with PeftModel.from_pretrained(repo), merge it for serving, re-render and push the card with metrics."""

from __future__ import annotations

import json
import os
import re

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, shared
from tests.test_training import build_tiny_model, tiny_run_args


def cli(*args: str):
    from nli_cot_hub.cli import build_app

    return CliRunner().invoke(build_app(), list(args))


def test_train_rejects_bad_input_in_one_line(tmp_path):
    missing = cli(
        "train",
        "--config",
        str(REPO / "recipes/smollm2_demo.yaml"),
        "--dataset_name",
        str(tmp_path / "nowhere.jsonl"),
        "--output_dir",
        str(tmp_path / "out"),
    )
    assert missing.exit_code == 2 and "nowhere.jsonl" in missing.output and "Traceback" not in missing.output
    unknown = cli("train", "--config", str(REPO / "recipes/smollm2_demo.yaml"), "--no_such_field", "1")
    assert unknown.exit_code == 2
    assert cli("train").exit_code == 2


def test_merge_and_card_help_describe_their_options():
    merge_help = cli("merge", "--help").output
    assert "--base-model" in merge_help and "--dtype" in merge_help
    card_help = cli("card", "--help").output
    assert "--eval-metrics" in card_help and "--push" in card_help


@pytest.mark.slow
@pytest.mark.server
def test_train_push_load_merge_and_card(embedded_model_path, tmp_path, hub_server, monkeypatch):
    import huggingface_hub.hf_api
    import torch
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = build_tiny_model(embedded_model_path, tmp_path / "tiny")
    output = tmp_path / "run"
    repo = f"{hub_server.user}/tiny-nli-cot-{os.getpid()}"
    trained = cli(
        "train",
        "--config",
        str(REPO / "recipes/smollm2_demo.yaml"),
        *tiny_run_args(base_path, output, "--max_steps", "2", "--warmup_steps", "0"),
        "--push_to_hub",
        "true",
        "--hub_model_id",
        repo,
        "--hub_strategy",
        "end",
        "--hub_dataset_id",
        "tester/nli-cot",
    )
    assert trained.exit_code == 0, trained.output
    outcome = re.findall(r'\{"status".*\}', trained.output)[-1]  # progress bars share the line
    assert json.loads(outcome)["hub_model_id"] == repo

    # One push per run: the repo's initial commit and the final upload, not save_model's own push besides.
    commits = HfApi().list_repo_commits(repo)
    assert [commit.title for commit in commits] == ["Adapter, tokenizer, metrics and model card", "initial commit"]
    files = set(HfApi().list_repo_files(repo))
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "tokenizer.json",
        "training_metrics.json",
        "training_curves.png",
        "recipe_resolved.yaml",
    } <= files
    assert not any(name.startswith("checkpoint-") for name in files)
    card = ModelCard.load(repo)
    assert card.data.library_name == "peft" and card.data.datasets == ["tester/nli-cot"]
    assert hub_server.token not in card.content and str(tmp_path) not in card.content

    # peft asks huggingface_hub's module-level HfApi, which took its endpoint when first imported
    # (earlier tests may have imported it before the fixture pointed HF_ENDPOINT at the server).
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub_server.url)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    pulled = PeftModel.from_pretrained(base, repo)  # from the server, not the local folder
    local = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), str(output)
    )
    tokenizer = AutoTokenizer.from_pretrained(repo)
    batch = tokenizer(["Premise: A dog runs.\nHypothesis: An animal moves."], return_tensors="pt")
    with torch.no_grad():
        adapter_logits = pulled(**batch).logits
        assert torch.allclose(adapter_logits, local(**batch).logits)

    merged_dir = tmp_path / "merged"
    merged = cli(
        "merge", str(output), "--output-dir", str(merged_dir), "--base-model", base_path, "--dtype", "float32"
    )
    assert merged.exit_code == 0, merged.output
    merged_model = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not any("lora" in name for name in merged_model.state_dict())
    with torch.no_grad():
        assert torch.allclose(merged_model(**batch).logits, adapter_logits, atol=1e-4)
    assert cli("merge", str(output), "--output-dir", str(tmp_path / "bf16"), "--base-model", base_path).exit_code == 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bf16").dtype == torch.bfloat16

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.61, "precision": 0.6, "recall": 0.7, "f1": 0.646, "parse_rate": 0.9}))
    carded = cli("card", str(output), "--eval-metrics", str(metrics), "--hub-model-id", repo, "--push")
    assert carded.exit_code == 0, carded.output
    pushed = ModelCard.load(repo)
    assert {r.metric_type: r.metric_value for r in pushed.data.eval_results}["accuracy"] == 0.61
    assert pushed.content == (output / "README.md").read_text()
    assert hf_hub_download(repo, "adapter_config.json")  # the adapter is still there


@pytest.mark.slow
def test_tiny_mistral_build_train_merge_predict_evaluate_card(tmp_path):
    """The Mistral path end to end on CPU with the tiny model of its architecture and the real v3 tokenizer:
    build -> train (the loss covers exactly the answer + EOS) -> merge -> predict (local engine) -> evaluate
    -> card."""
    from datasets import load_dataset
    from transformers import AutoTokenizer, TrainerCallback

    from nli_cot_hub.chat_template import MISTRAL_INST_TEMPLATE
    from tests.tiny_mistral import build_tiny_mistral

    base = build_tiny_mistral(tmp_path / "base", chat_template=MISTRAL_INST_TEMPLATE)
    data = tmp_path / "cot"
    built = cli("build", "--import-artifacts", str(shared("comp34812_nli_jd0g_cot")), "--output-dir", str(data))
    assert built.exit_code == 0, built.output

    class FirstRows(TrainerCallback):
        """The first two training rows as the collator hands them to the model."""

        batch = None

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            FirstRows.batch = train_dataloader.collate_fn([train_dataloader.dataset[i] for i in range(2)])

    from nli_cot_hub.train.sft import main, make_parser

    output = tmp_path / "adapter"
    arguments = make_parser().parse_args_and_config(
        [
            "--config",
            str(REPO / "recipes/smollm2_demo.yaml"),
            "--model_name_or_path",
            base,
            "--dataset_name",
            str(data),
            "--dataset_config",
            "combined",
            "--output_dir",
            str(output),
            "--max_steps",
            "2",
            "--warmup_steps",
            "0",
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
            "--max_length",
            "512",
            "--max_eval_samples",
            "2",
            "--hub_dataset_id",
            "tester/nli-cot",
        ]
    )
    assert main(*arguments, callbacks=[FirstRows()])["status"] == "completed"

    tokenizer = AutoTokenizer.from_pretrained(output)
    train_rows = load_dataset(str(data), "combined", split="train")
    for row, ids, labels in zip(train_rows, FirstRows.batch["input_ids"], FirstRows.batch["labels"]):
        learned = [int(token) for token, label in zip(ids, labels) if label != -100]
        assert learned == [int(label) for label in labels if label != -100]  # labels are the ids themselves
        answer = row["completion"][0]["content"]
        assert learned[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(learned).strip() == answer + tokenizer.eos_token
        prompt_ids = [
            int(token) for token, label in zip(ids, labels) if label == -100 and token != tokenizer.pad_token_id
        ]
        assert tokenizer.convert_ids_to_tokens(prompt_ids)[-1] == "[/INST]"  # the whole prompt is masked

    merged = tmp_path / "merged"
    done = cli("merge", str(output), "--output-dir", str(merged), "--base-model", base, "--dtype", "float32")
    assert done.exit_code == 0, done.output
    predictions, report = tmp_path / "predictions.jsonl", tmp_path / "eval"
    done = cli(
        "predict",
        str(shared("comp34812_nli/trial_jd0g.csv")),
        "--model",
        str(merged),
        "--limit",
        "4",
        "--max-new-tokens",
        "40",
        "-o",
        str(predictions),
    )  # room to close a constrained answer
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(records) == 4 and all(record["raw_output"] for record in records)
    done = cli("evaluate", str(predictions), "-o", str(report))
    assert done.exit_code == 0, done.output
    done = cli("card", str(output), "--eval-metrics", str(report / "metrics.json"), "--eval-dataset", "trial")
    assert done.exit_code == 0, done.output
    card = (output / "README.md").read_text()
    assert "tester/nli-cot" in card and "| accuracy |" in card


@pytest.mark.slow
def test_merge_from_a_yaml_config_with_a_flag_override_and_as_a_function(embedded_model_path, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.data import DataError
    from nli_cot_hub.merge import MergeConfig, MergeResult, run_merge

    model = AutoModelForCausalLM.from_pretrained(embedded_model_path)
    lora = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False)
    )  # non-zero B, so merging changes weights
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]])}
    with torch.no_grad():
        adapter_logits = lora(**batch).logits
        with lora.disable_adapter():
            base_logits = lora(**batch).logits

    done = run_merge(
        MergeConfig(
            adapter=str(adapter), output_dir=str(tmp_path / "direct"), base_model=embedded_model_path, dtype="float32"
        )
    )
    assert isinstance(done, MergeResult) and done.output_dir == tmp_path / "direct" and done.dtype == "float32"
    merged = AutoModelForCausalLM.from_pretrained(done.output_dir)
    with torch.no_grad():
        merged_logits = merged(**batch).logits
    assert (merged_logits - adapter_logits).abs().max() < 0.01 < (base_logits - adapter_logits).abs().max()

    config = tmp_path / "merge.yaml"
    config.write_text(
        f"adapter: {adapter}\nbase_model: {embedded_model_path}\noutput_dir: {tmp_path / 'from_file'}\n"
        "dtype: float32\n"
    )
    result = cli("merge", "--config", str(config), "--output-dir", str(tmp_path / "from_flag"))
    assert result.exit_code == 0, result.output
    assert f"({'float32'}) -> {tmp_path / 'from_flag'}" in result.output and not (tmp_path / "from_file").exists()
    assert (tmp_path / "from_flag" / "config.json").exists()
    with pytest.raises(DataError, match="--dtype must be one of bfloat16, float16, float32"):
        MergeConfig(adapter=str(adapter), dtype="int8")
