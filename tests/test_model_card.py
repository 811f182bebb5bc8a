"""The model card: Hub metadata that huggingface_hub parses (model-index included), the hyperparameter
and evaluation tables, no local path or token in the text, and validation by the Hub-protocol server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO

EVAL = {"accuracy": 0.8812, "precision": 0.9011, "recall": 0.8523, "f1": 0.876, "parse_rate": 0.995, "n": 3005}


def output_folder(tmp_path: Path, monkeypatch, dataset_name: str | None = None, *extra: str) -> Path:
    """What training leaves behind for the Mistral recipe (recipe, metrics, adapter config), written by the
    same functions training uses."""
    from peft import LoraConfig

    from nli_cot_hub.train import outputs
    from nli_cot_hub.train.model import hub_base_model
    from nli_cot_hub.train.schedule import accumulation_steps
    from nli_cot_hub.train.sft import make_parser

    output = tmp_path / "mistral7b-qlora-r32"
    monkeypatch.chdir(tmp_path.parent)  # paths inside the working directory are kept relative
    script, train_args, model = make_parser().parse_args_and_config(
        [
            "--config",
            str(REPO / "recipes/mistral7b_qlora.yaml"),
            "--use_cpu",
            "true",
            "--output_dir",
            str(output),
            *(["--dataset_name", dataset_name] if dataset_name else []),
            *extra,
        ]
    )
    train_args.gradient_accumulation_steps = accumulation_steps(
        script.effective_batch_size, train_args.per_device_train_batch_size, 1
    )
    outputs.write_resolved_recipe(outputs.resolved_recipe(script, train_args, model), str(output))
    from nli_cot_hub.formats import write_format

    write_format(output, script.completion_format, script.label_loss_weight)
    history = [
        {"step": 10, "loss": 1.31, "learning_rate": 1.3e-5},
        {"step": 50, "eval_loss": 0.72},
        {"step": 50, "loss": 0.69, "learning_rate": 6.6e-5},
        {"step": 50, "train_runtime": 812.5, "train_samples_per_second": 3.9},
    ]
    outputs.write_metrics(
        history,
        outputs.training_summary(
            history,
            {
                "base_model": hub_base_model(model.model_name_or_path),
                "train_examples": 3200,
                "truncated_examples": 2,
                "processes": 1,
                "trainable_parameters": 83_886_080,
            },
        ),
        str(output),
    )
    LoraConfig(
        r=model.lora_r,
        lora_alpha=model.lora_alpha,
        lora_dropout=model.lora_dropout,
        target_modules=model.lora_target_modules,
        task_type="CAUSAL_LM",
        base_model_name_or_path=model.model_name_or_path,
    ).save_pretrained(str(output))
    return output


def test_card_metadata_parses_with_model_index(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from nli_cot_hub.model_card import render_card

    output = output_folder(tmp_path, monkeypatch)
    text = render_card(
        output,
        eval_metrics=EVAL,
        hub_model_id="someone/mistral7b-nli-cot",
        dataset_id="someone/nli-cot",
        eval_dataset="COMP34812 NLI dev",
    )
    data = ModelCard(text).data
    assert data.base_model == "mistralai/Mistral-7B-v0.3"
    assert (data.library_name, data.pipeline_tag, data.license) == ("peft", "text-generation", "apache-2.0")
    assert data.datasets == ["someone/nli-cot"] and "nli" in data.tags
    results = {result.metric_type: result.metric_value for result in data.eval_results}
    assert results == {name: EVAL[name] for name in ("accuracy", "precision", "recall", "f1", "parse_rate")}
    assert data.model_name == "mistral7b-nli-cot"
    assert {(r.dataset_type, r.dataset_name) for r in data.eval_results} == {("COMP34812 NLI dev",) * 2}
    # Body: the hyperparameters of the recipe, the effective batch, the evaluation table, how to load it.
    import yaml

    micro_batch = yaml.safe_load((REPO / "recipes/mistral7b_qlora.yaml").read_text())["per_device_train_batch_size"]
    for row in (
        "| lora_r | 32 |",
        "| lora_alpha | 64 |",
        "| warmup_steps | 0.1 |",
        "| max_length | 512 |",
        "| effective batch | 64 |",
        f"| gradient_accumulation_steps | {64 // micro_batch} |",
        "| load_in_4bit | True |",
        "| accuracy | 0.8812 |",
        "| parse_rate | 0.9950 |",
        "| training examples | 3200 |",
    ):
        assert row in text, row
    assert 'AutoPeftModelForCausalLM.from_pretrained("someone/mistral7b-nli-cot"' in text
    assert "2 of 3200 training examples" in text
    for section in ("## Intended use", "## Bias, risks and limitations", "## Citation", "## Training procedure"):
        assert section in text


def test_card_without_evaluation_has_no_model_index(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from nli_cot_hub.model_card import write_card

    output = output_folder(tmp_path, monkeypatch)
    path = write_card(output)
    text = path.read_text()
    assert path.name == "README.md"
    assert "model-index" not in text and ModelCard(text).data.eval_results is None
    assert "No held-out evaluation" in text and "0.72" in text  # best validation loss instead

    (output / "metrics.json").write_text(json.dumps(EVAL))  # flat metrics next to the adapter
    assert "model-index" in write_card(output).read_text()
    # nli-cot evaluate's metrics.json nests the values per model
    (output / "metrics.json").write_text(json.dumps({"unparsed": "wrong", "models": {"adapter": EVAL}}))
    assert "| f1 | 0.8760 |" in write_card(output).read_text()


def test_evaluate_metrics_pick_one_model():
    from nli_cot_hub.model_card import flat_eval_metrics

    nested = {"models": {"base": {"accuracy": 0.5}, "fine-tuned": EVAL}}
    assert flat_eval_metrics(nested, "fine-tuned") == EVAL
    with pytest.raises(ValueError, match="several models"):
        flat_eval_metrics(nested)
    assert flat_eval_metrics(EVAL) == EVAL


def test_no_local_path_or_token_leaks(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from nli_cot_hub.model_card import render_card

    monkeypatch.setenv("HF_TOKEN", "hf_do_not_leak_me")
    data_folder = tmp_path / "private" / "my_cot_build"
    data_folder.mkdir(parents=True)
    output = output_folder(tmp_path, monkeypatch, dataset_name=str(data_folder))
    text = render_card(output, eval_metrics=EVAL)
    assert "hf_do_not_leak_me" not in text
    assert str(tmp_path) not in text and "/private/" not in text
    assert "my_cot_build" in text  # named, by its folder name only
    assert ModelCard(text).data.datasets is None  # a local folder is not a Hub data set id
    recipe = (output / "recipe_resolved.yaml").read_text()
    assert str(tmp_path) not in recipe and "hf_do_not_leak_me" not in recipe


@pytest.mark.server
def test_card_validates_against_the_hub_protocol_server(tmp_path, monkeypatch, hub_server):
    from huggingface_hub import ModelCard

    from nli_cot_hub.model_card import render_card

    output = output_folder(tmp_path, monkeypatch)
    card = ModelCard(render_card(output, eval_metrics=EVAL, hub_model_id="tester/x", dataset_id="tester/nli-cot"))
    card.validate()  # POST /api/validate-yaml, as against the real Hub
    # This server checks the YAML header only; the model-index structure is checked by parsing (above).
    assert card.data.eval_results and card.data.to_dict()["model-index"][0]["name"] == "x"


def test_card_names_the_completion_format_and_the_label_weight(tmp_path, monkeypatch):
    from nli_cot_hub.model_card import render_card

    default = render_card(output_folder(tmp_path / "a", monkeypatch))
    assert (
        "**thought_first** completion format" in default
        and '{"thought_process": "...", "predicted_label": 1}' in default
    )
    assert "label token weighted" not in default
    output = output_folder(
        tmp_path / "b", monkeypatch, None, "--completion_format", "label_first", "--label_loss_weight", "5"
    )
    text = render_card(output)
    assert "**label_first** completion format" in text
    assert '`{"predicted_label": 1, "explanation": "..."}`' in text
    assert '"A man is playing a guitar on stage.", "A person is making music.", "label_first"' in text
    assert "the label token weighted 5.0x" in text
    (output / "completion_format.json").unlink()  # the recipe alone still says it
    assert "**label_first** completion format" in render_card(output)


def _card(*arguments, env=None):
    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app

    result = CliRunner().invoke(build_app(), ["card", *map(str, arguments)], env=env)
    assert "Traceback" not in result.output
    return result


def test_card_refuses_a_folder_that_is_not_an_adapter(tmp_path):
    built = tmp_path / "dataset"
    (built / "combined").mkdir(parents=True)
    (built / "combined" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    card = "---\nconfigs:\n- config_name: combined\n---\n# the data set card\n"
    (built / "README.md").write_text(card)
    result = _card(built)
    assert result.exit_code == 2 and "not an adapter folder" in result.output
    assert (built / "README.md").read_text() == card


def test_card_refuses_null_metrics_and_a_push_without_token(tmp_path, monkeypatch):
    output = output_folder(tmp_path, monkeypatch)
    null_metrics = tmp_path / "metrics.json"
    null_metrics.write_text(
        json.dumps({"models": {"adapter": {"rows": 0, "accuracy": None, "macro_f1": None, "parse_rate": None}}})
    )
    result = _card(output, "--eval-metrics", null_metrics)
    assert result.exit_code == 2 and "no scored metric" in result.output
    no_token = _card(output, "--push", "--hub-model-id", "tester/x", env={"HF_TOKEN": "", "HF_HOME": str(tmp_path)})
    assert no_token.exit_code == 2 and "HF_TOKEN" in no_token.output


@pytest.mark.server
def test_card_push_with_a_bad_token_is_one_line(tmp_path, monkeypatch, hub_server):
    output = output_folder(tmp_path, monkeypatch)
    env = {**hub_server.env(tmp_path / "cache"), "HF_TOKEN": "hf_wrong_token_0000"}
    result = _card(output, "--push", "--hub-model-id", "tester/x", env=env)
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert "tester/x" in line and "hf_wrong_token_0000" not in result.output


def test_card_from_a_yaml_config_with_a_flag_override_and_as_a_function(tmp_path, monkeypatch):
    from nli_cot_hub.model_card import CardConfig, CardResult, run_card

    output = output_folder(tmp_path, monkeypatch)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(EVAL))
    done = run_card(
        CardConfig(output_dir=str(output), eval_metrics=str(metrics), eval_dataset="held-out dev", eval_split="dev")
    )
    assert isinstance(done, CardResult) and done.path == output / "README.md" and done.pushed_to is None
    text = done.path.read_text()
    assert "name: held-out dev" in text and "split: dev" in text and "value: 0.8812" in text

    config = tmp_path / "card.yaml"
    config.write_text(
        f"output_dir: {output}\neval_metrics: {metrics}\neval_split: from-the-file\neval_dataset: the file's set\n"
    )
    result = _card("--config", config, "--eval-split", "from-the-flag")
    assert result.exit_code == 0, result.output
    assert f"wrote {output / 'README.md'}" in result.output
    text = (output / "README.md").read_text()
    assert "split: from-the-flag" in text and "from-the-file" not in text and "name: the file's set" in text
