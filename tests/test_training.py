"""Training (nli_cot_hub/train/, run through train.py, `python -m`, `accelerate launch` and the CLI) on CPU: data
preparation, the Mistral tokenizer from
mistral-common, the LR schedule, real LoRA and 4-bit QLoRA runs on the embedded model, exact resume
after SIGTERM, and accelerate launch (1 process, and 2 gloo processes).

Runs that only exercise mechanics (resume, 2 processes) use a 2-layer model with the embedded model's
architecture and tokenizer: a real model, just small enough to take seconds a step on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, shared

SAMPLE = "comp34812_nli_jd0g_cot/sample_thoughts.json"


def parse(*overrides: str, recipe: str = "recipes/smollm2_demo.yaml"):
    from nli_cot_hub.train.sft import make_parser

    return make_parser().parse_args_and_config(["--config", str(REPO / recipe), *overrides])


def build_tiny_model(embedded_path: str, target: Path) -> str:
    """A 2-layer, 64-wide model of the embedded model's architecture (random weights) + its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (target / "config.json").exists():
        return str(target)
    config = AutoConfig.from_pretrained(embedded_path)
    config.update(
        dict(
            num_hidden_layers=2,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        )
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(target)
    AutoTokenizer.from_pretrained(embedded_path).save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def tiny_model(embedded_model_path, tmp_path_factory) -> str:
    return build_tiny_model(embedded_model_path, tmp_path_factory.mktemp("tiny") / "model")


def tiny_run_args(model: str, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        model,
        "--dataset_name",
        str(shared(SAMPLE)),
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "8",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--max_length",
        "256",
        "--eval_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--save_steps",
        "1000",
        "--logging_steps",
        "1",
        "--learning_rate",
        "1e-3",
        *extra,
    ]


def read_adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# ---------------------------------------------------------------------------------------------
# Data, tokenizers, schedule (no training)
# ---------------------------------------------------------------------------------------------


def test_flat_rows_become_the_shared_chat_format():
    from datasets import load_dataset

    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.train.data import build_examples

    raw = load_dataset("json", data_files=str(shared(SAMPLE)), split="train")
    built = build_examples(raw, "sample", "train")
    converted = built.examples
    assert converted.column_names == ["prompt", "completion"]
    consistent = raw.filter(lambda row: row["correct"])  # thoughts that reached the gold label
    assert 0 < len(converted) == len(consistent) < len(raw)
    assert (built.rows, built.left_out) == (len(raw), len(raw) - len(consistent))
    for row, example in zip(consistent.select(range(5)), converted.select(range(5))):
        assert example["prompt"] == prompt_messages(row["premise"], row["hypothesis"])
        answer = json.loads(example["completion"][0]["content"])
        assert answer["predicted_label"] == int(row["true_label"])  # the gold label, not the model's guess
        assert answer["thought_process"] == row["thought_process"]


def test_bad_row_names_source_row_and_field(tmp_path):
    from datasets import Dataset

    from nli_cot_hub.data import DataError
    from nli_cot_hub.train.data import build_examples

    rows = Dataset.from_list(
        [
            {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 1, "thought_process": "ok"},
            {"premise": "A cat sleeps.", "hypothesis": "A cat naps.", "label": 7, "thought_process": "ok"},
        ]
    )
    with pytest.raises(DataError, match=r"mine\.jsonl \[train\] row 1, field 'label'"):
        build_examples(rows, "mine.jsonl", "train")
    with pytest.raises(DataError, match="needs prompt/completion columns"):
        build_examples(Dataset.from_list([{"text": "x"}]), "mine.jsonl", "train")


def test_loads_save_to_disk_folders_and_holds_out_eval(tmp_path):
    from datasets import DatasetDict, load_dataset

    from nli_cot_hub.train.configs import NliScriptArguments
    from nli_cot_hub.train.data import prepare_splits

    raw = load_dataset("json", data_files=str(shared(SAMPLE)), split="train").filter(lambda r: r["correct"])
    raw = raw.select(range(40))
    DatasetDict({"train": raw.select(range(30)), "validation": raw.select(range(30, 40))}).save_to_disk(
        tmp_path / "dd"
    )
    train, evaluation = prepare_splits(NliScriptArguments(dataset_name=str(tmp_path / "dd")), 0, want_eval=True)
    assert (len(train), len(evaluation)) == (30, 10)

    raw.to_parquet(str(tmp_path / "rows.parquet"))
    train, evaluation = prepare_splits(
        NliScriptArguments(dataset_name=str(tmp_path / "rows.parquet"), eval_fraction=0.25), 0, want_eval=True
    )
    assert (len(train), len(evaluation)) == (30, 10)
    train_prompts = {json.dumps(row["prompt"]) for row in train}
    assert not any(json.dumps(row["prompt"]) in train_prompts for row in evaluation)


def test_truncation_report_counts_examples_over_max_length(embedded_model_path):
    from datasets import load_dataset

    from nli_cot_hub.train.data import build_examples, token_lengths, truncation_report
    from nli_cot_hub.train.model import load_tokenizer

    tokenizer = load_tokenizer(embedded_model_path)
    data = build_examples(load_dataset("json", data_files=str(shared(SAMPLE)), split="train")).examples
    lengths = token_lengths(data, tokenizer)
    cut = sorted(lengths)[len(lengths) // 2]
    report = truncation_report(data, tokenizer, cut)
    assert report.truncated == sum(length > cut for length in lengths) > 0
    assert report.max_tokens == max(lengths)
    assert "would be truncated" in report.line()
    # Each length is the exact sequence SFTTrainer trains on: it ends with the end-of-turn token.
    ids = tokenizer.apply_chat_template(data[0]["prompt"] + data[0]["completion"], return_dict=True)["input_ids"]
    assert len(ids) == lengths[0] and tokenizer.convert_ids_to_tokens(ids).count("<|im_end|>") == 3


def test_pad_token_is_never_eos(embedded_model_path):
    from transformers import AutoTokenizer

    from nli_cot_hub.train.model import ensure_distinct_pad

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    tokenizer.pad_token = tokenizer.eos_token
    ensure_distinct_pad(tokenizer)
    assert tokenizer.pad_token != tokenizer.eos_token and tokenizer.pad_token_id is not None


def test_mistral_tokenizer_from_mistral_common_matches_its_encoder():
    import mistral_common
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.data import load_pairs
    from nli_cot_hub.train.model import MISTRAL_COMMON_FILES, load_tokenizer

    tokenizer = load_tokenizer("mistralai/Mistral-7B-v0.3", "mistral-common:v3")
    assert len(tokenizer) == 32768
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    assert tokenizer.pad_token_id not in (None, tokenizer.eos_token_id)
    reference = MistralTokenizer.from_file(
        str(Path(mistral_common.__file__).parent / "data" / MISTRAL_COMMON_FILES["v3"])
    ).instruct_tokenizer.tokenizer
    pairs = load_pairs(shared("comp34812_nli/trial_jd0g.csv")).head(20)
    for text in list(pairs["premise"]) + list(pairs["hypothesis"]):
        assert tokenizer(text).input_ids == reference.encode(text, bos=True, eos=False), text
    # The chat template: system text before the user turn inside [INST], answer then </s>; the prompt
    # alone is a prefix of prompt + answer, so completion-only masking is exact.
    prompt = prompt_messages(pairs["premise"][0], pairs["hypothesis"][0])
    answer = [{"role": "assistant", "content": '{"thought_process": "x", "predicted_label": 1}'}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(prompt + answer, return_dict=True)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids and full_ids[-1] == 2
    assert tokenizer.convert_ids_to_tokens(prompt_ids[:2]) == ["<s>", "[INST]"]
    assert tokenizer.convert_ids_to_tokens(prompt_ids[-1:]) == ["[/INST]"]


def cosine_with_warmup(step: int, peak: float, warmup_steps: int, total_steps: int) -> float:
    """The textbook linear warm-up then cosine decay to zero, written out independently of transformers."""
    if step < warmup_steps:
        return peak * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def test_lr_schedule_is_a_pure_function_of_the_step():
    """Transformers' cosine-with-warmup scheduler, restored from a state dict at step k (as resume does),
    gives the same LR per step as the uninterrupted one; both follow the textbook formula, and so do the
    rates the schedule plan reports."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from nli_cot_hub.train.schedule import learning_rates

    def optimizer():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)

    total, warmup, k = 40, 15, 13
    first = optimizer()
    scheduler = get_cosine_schedule_with_warmup(first, warmup, total)
    uninterrupted = []
    for _ in range(total):
        uninterrupted.append(first.param_groups[0]["lr"])
        first.step(), scheduler.step()

    second = optimizer()
    scheduler = get_cosine_schedule_with_warmup(second, warmup, total)
    resumed = []
    for _ in range(k):
        resumed.append(second.param_groups[0]["lr"])
        second.step(), scheduler.step()
    saved_optimizer, saved_scheduler = second.state_dict(), scheduler.state_dict()
    # The Trainer's order on resume: build both, then load the optimizer state (which holds the current LR:
    # building a scheduler resets it to the step-0 value) and then the scheduler state.
    third = optimizer()
    scheduler = get_cosine_schedule_with_warmup(third, warmup, total)
    third.load_state_dict(saved_optimizer)
    scheduler.load_state_dict(saved_scheduler)
    for _ in range(total - k):
        resumed.append(third.param_groups[0]["lr"])
        third.step(), scheduler.step()

    assert resumed == pytest.approx(uninterrupted, rel=1e-12)
    assert uninterrupted == pytest.approx([cosine_with_warmup(step, 2e-4, warmup, total) for step in range(total)])
    assert learning_rates(2e-4, warmup, total, "cosine") == pytest.approx(uninterrupted, rel=1e-12)
    assert max(uninterrupted) == pytest.approx(2e-4) and uninterrupted.index(max(uninterrupted)) == warmup


def test_effective_batch_size_sets_accumulation():
    from nli_cot_hub.train.schedule import accumulation_steps

    assert accumulation_steps(64, 16, 1) == 4
    assert accumulation_steps(64, 16, 2) == 2
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(64, 16, 3)


def test_recipes_parse_with_their_documented_values():
    script, training, model = parse("--use_cpu", "true", recipe="recipes/mistral7b_qlora.yaml")
    assert (model.load_in_4bit, model.bnb_4bit_quant_type, model.use_bnb_nested_quant, model.dtype) == (
        True,
        "nf4",
        True,
        "bfloat16",
    )
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (32, 64, 0.05)
    assert sorted(model.lora_target_modules) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert (training.max_length, training.warmup_steps, training.max_grad_norm) == (512, 0.1, 1.0)
    assert training.hub_strategy == "end"
    assert training.lr_scheduler_type == "cosine" and training.completion_only_loss is True
    assert training.load_best_model_at_end and script.effective_batch_size == 64
    _, _, ablation = parse("--use_cpu", "true", recipe="recipes/mistral7b_qlora_r16.yaml")
    assert (ablation.lora_r, ablation.lora_alpha) == (16, 32)
    _, bf16_training, bf16 = parse("--use_cpu", "true", recipe="recipes/mistral7b_lora_bf16.yaml")
    assert bf16.load_in_4bit is False and bf16.dtype == "bfloat16"  # the same LoRA on the unquantized base
    assert (bf16.lora_r, bf16.lora_alpha, bf16.lora_target_modules) == (32, 64, model.lora_target_modules)
    assert bf16_training.per_device_train_batch_size == training.per_device_train_batch_size
    assert parse("--use_cpu", "true", recipe="recipes/mistral7b_lora_bf16.yaml")[0].cudnn_attention is False
    fast_script, fast_training, fast = parse("--use_cpu", "true", recipe="recipes/mistral7b_qlora_fast.yaml")
    assert fast_training.gradient_checkpointing_kwargs["every_n_layers"] == 2
    assert (fast.lora_dropout, fast_script.cudnn_attention) == (0, False)
    assert fast_training.per_device_train_batch_size == 16
    assert (fast.load_in_4bit, fast.lora_r, fast.lora_target_modules) == (True, 32, model.lora_target_modules)
    assert fast_script.effective_batch_size == script.effective_batch_size and not script.cudnn_attention
    script, training, model = parse("--max_steps", "7")  # CLI flags override the recipe
    assert training.max_steps == 7 and model.model_name_or_path == "embedded"


@pytest.mark.parametrize("entry", [["train.py"], ["-m", "nli_cot_hub.train"]])
def test_every_entry_point_runs_the_package_and_refuses_bad_data_in_one_line(entry, tmp_path):
    """The repository's train.py and the package module (as `accelerate launch -m` runs it) are one program:
    bad data stops before any model loads, with exit 2 and one line naming the source."""
    missing = tmp_path / "nowhere.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            *entry,
            "--config",
            str(REPO / "recipes/smollm2_demo.yaml"),
            "--dataset_name",
            str(missing),
            "--output_dir",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"error: {missing}: no such file or folder (and not a Hub repo id)"
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {path.stem: load_config_from_file(str(path)) for path in (REPO / "accelerate_configs").glob("*.yaml")}
    assert {"single_gpu", "cpu", "multi_gpu", "fsdp_qlora", "deepspeed_zero2", "deepspeed_zero3"} <= set(configs)
    assert configs["fsdp_qlora"].distributed_type == "FSDP"
    assert configs["fsdp_qlora"].fsdp_config["fsdp_use_orig_params"] is False
    assert configs["deepspeed_zero3"].deepspeed_config["zero_stage"] == 3
    assert configs["multi_gpu"].distributed_type == "MULTI_GPU" and configs["cpu"].use_cpu


# ---------------------------------------------------------------------------------------------
# Real training
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_qlora_4bit_gradients_reach_the_lora_weights(embedded_model_path):
    """NF4 base on CPU (bitsandbytes): frozen 4-bit weights, gradients on every LoRA matrix."""
    import bitsandbytes as bnb
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from trl import ModelConfig, get_peft_config

    from nli_cot_hub.train.model import load_tokenizer, quantization_config

    model_args = ModelConfig(
        model_name_or_path=embedded_model_path,
        dtype="float32",
        load_in_4bit=True,
        use_bnb_nested_quant=True,
        use_peft=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_target_modules=["q_proj", "v_proj", "down_proj"],
    )
    model = AutoModelForCausalLM.from_pretrained(
        embedded_model_path, quantization_config=quantization_config(model_args), dtype=torch.float32
    )
    assert model.is_loaded_in_4bit
    model = get_peft_model(model, get_peft_config(model_args))
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(not m.weight.requires_grad for m in quantized)
    tokenizer = load_tokenizer(embedded_model_path)
    batch = tokenizer(
        ["Premise: A man plays a guitar on stage. Hypothesis: Someone makes music."], return_tensors="pt"
    )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # lora_B starts at zero, so lora_A only gets a gradient after one update
        optimizer.zero_grad()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
        assert len(grads) == 2 * 3 * model.config.num_hidden_layers
        assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
        optimizer.step()
    assert all(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.slow
def test_accelerate_launch_trains_saves_and_reloads(embedded_model_path, tmp_path):
    """train.py end to end under `accelerate launch` (single-process config) on the embedded model:
    the loss on one repeated example falls, the adapter changes, and it reloads and generates."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "accelerate_configs/cpu.yaml"),
        str(REPO / "train.py"),
        "--config",
        str(REPO / "recipes/smollm2_demo.yaml"),
        "--dataset_name",
        str(shared(SAMPLE)),
        "--output_dir",
        str(output),
        "--max_train_samples",
        "1",
        "--max_eval_samples",
        "1",
        "--per_device_train_batch_size",
        "1",
        "--gradient_accumulation_steps",
        "1",
        "--max_steps",
        "3",
        "--warmup_steps",
        "0",
        "--learning_rate",
        "1e-3",
        "--lora_dropout",
        "0",
        "--max_length",
        "256",
        "--eval_steps",
        "3",
        "--save_steps",
        "3",
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_TOKEN": "hf_secret_never_written"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "would be truncated" in done.stdout

    metrics = json.loads((output / "training_metrics.json").read_text())
    losses = [entry["loss"] for entry in metrics["log_history"] if "loss" in entry]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert metrics["summary"]["best_eval_loss"] is not None and metrics["summary"]["train_tokens_per_second"] > 0
    adapter = read_adapter(output)
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("recipe_resolved.yaml", "README.md", "adapter_config.json", "training_metrics.json"):
        text = (output / name).read_text()
        assert "hf_secret_never_written" not in text and str(tmp_path) not in text, name
    assert (
        json.loads((output / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )

    tokenizer = AutoTokenizer.from_pretrained(output)
    assert tokenizer.pad_token != tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(embedded_model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, output)
    reloaded = dict(model.named_parameters())
    name = next(n for n in adapter if "lora_B" in n)
    assert torch.equal(reloaded[name.replace(".weight", ".default.weight")].detach(), adapter[name])
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Premise: A dog runs.\nHypothesis: An animal moves."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_resume_after_sigterm_is_exact(tiny_model, tmp_path):
    """N steps straight vs k steps, SIGTERM (checkpoint saved), resume to N: same LR per step, same
    losses (data position and RNG restored), same final adapter."""
    from transformers import TrainerCallback

    from nli_cot_hub.train.sft import main

    steps, stop_at = 5, 2
    common = ["--max_steps", str(steps), "--warmup_steps", "1", "--lora_dropout", "0.1"]

    straight = parse(*tiny_run_args(tiny_model, tmp_path / "straight", *common))
    assert main(*straight)["status"] == "completed"

    class SendSigterm(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)

    outcome = main(*parse(*tiny_run_args(tiny_model, tmp_path / "split", *common)), callbacks=[SendSigterm()])
    assert outcome["status"] == "interrupted" and outcome["signal"] == signal.SIGTERM
    assert Path(outcome["checkpoint"]).name == f"checkpoint-{stop_at}"
    assert not (tmp_path / "split" / "adapter_model.safetensors").exists()
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored after training

    resumed = main(
        *parse(*tiny_run_args(tiny_model, tmp_path / "split", *common, "--resume_from_checkpoint", "latest"))
    )
    assert resumed["status"] == "completed"

    def per_step(folder: Path, key: str) -> dict[int, float]:
        history = json.loads((folder / "training_metrics.json").read_text())["log_history"]
        return {entry["step"]: entry[key] for entry in history if key in entry}

    straight_lr, resumed_lr = (
        per_step(tmp_path / "straight", "learning_rate"),
        per_step(tmp_path / "split", "learning_rate"),
    )
    assert sorted(resumed_lr) == list(range(1, steps + 1))
    assert resumed_lr == pytest.approx(straight_lr, rel=1e-9)
    assert per_step(tmp_path / "split", "loss") == pytest.approx(per_step(tmp_path / "straight", "loss"), rel=1e-4)
    first, second = read_adapter(tmp_path / "straight"), read_adapter(tmp_path / "split")
    assert first.keys() == second.keys()
    for name in first:
        assert (first[name] - second[name]).abs().max() < 1e-5, name


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_lr(tiny_model, tmp_path):
    """Two CPU processes (DDP over gloo): with effective_batch_size fixed, the optimizer step count and the LR
    per optimizer step equal the single-process run (accumulation is halved), and the plan is printed once, by the
    main process. accelerate launches CPU workers only through MPI, so the 2-process run uses torchrun, which
    accelerate uses for GPUs too."""

    def launch(processes: int, output: Path) -> tuple[dict, str]:
        launcher = (
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(REPO / "accelerate_configs/cpu.yaml"),
            ]
            if processes == 1
            else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        )
        # The package module, as `accelerate launch -m nli_cot_hub.train` and `torchrun -m` run it.
        command = [
            *launcher,
            "-m",
            "nli_cot_hub.train",
            "--config",
            str(REPO / "recipes/smollm2_demo.yaml"),
            *tiny_run_args(
                tiny_model,
                output,
                "--effective_batch_size",
                "4",
                "--per_device_train_batch_size",
                "1",
                "--max_steps",
                "3",
                "--warmup_steps",
                "0.2",
                "--no_model_card",
            ),
        ]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((output / "training_metrics.json").read_text()), done.stdout

    (single, single_out), (double, double_out) = launch(1, tmp_path / "one"), launch(2, tmp_path / "two")
    assert double["summary"]["processes"] == 2 and single["summary"]["processes"] == 1
    assert single_out.count("schedule: 3 optimizer steps") == double_out.count("schedule: 3 optimizer steps") == 1
    assert double_out.count("would be truncated") == 1

    def lrs(metrics):
        return [entry["learning_rate"] for entry in metrics["log_history"] if "learning_rate" in entry]

    assert len(lrs(single)) == 3 and lrs(double) == pytest.approx(lrs(single), rel=1e-9)
    recipe = (tmp_path / "two" / "recipe_resolved.yaml").read_text()
    assert "gradient_accumulation_steps: 2" in recipe


def test_random_init_builds_the_architecture_without_weights(tiny_model, tmp_path, monkeypatch):
    """--random_init (benchmarks only): Mistral-7B-v0.3 is known without any download, and a random
    checkpoint of a model's architecture loads through the normal path."""
    import torch
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.train.model import load_model, model_config

    config = model_config("mistralai/Mistral-7B-v0.3")
    with torch.device("meta"):
        mistral = AutoModelForCausalLM.from_config(config)
    assert type(mistral).__name__ == "MistralForCausalLM"
    assert sum(p.numel() for p in mistral.parameters()) == 7_248_023_552  # Mistral-7B-v0.3's published size

    monkeypatch.setenv("NLI_COT_CACHE", str(tmp_path / "cache"))
    script, training_args, model_args = parse("--model_name_or_path", tiny_model, "--random_init", "true")
    model = load_model(model_args, training_args, random_init=script.random_init, seed=3)
    original = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.num_hidden_layers == original.config.num_hidden_layers == 2
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)
    assert list((tmp_path / "cache" / "random-init").iterdir())  # saved once, reused by later runs


@pytest.mark.slow
def test_qlora_recipe_path_trains_through_train_py(tiny_model, tmp_path):
    """--load_in_4bit through train.py (the Mistral recipe's path, on CPU): the base is NF4, the adapter
    trains and is saved."""
    from nli_cot_hub.train.sft import main

    args = parse(
        *tiny_run_args(
            tiny_model,
            tmp_path / "q",
            "--max_steps",
            "1",
            "--load_in_4bit",
            "true",
            "--use_bnb_nested_quant",
            "true",
            "--no_model_card",
            "--max_train_samples",
            "2",
            "--warmup_steps",
            "0",
        )
    )  # warm-up would make the one step's LR zero
    assert args[2].load_in_4bit
    outcome = main(*args)
    assert outcome["status"] == "completed"
    adapter = read_adapter(tmp_path / "q")
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())


def test_qlora_checkpoints_every_other_layer_when_asked(tiny_model, tmp_path):
    """mistral7b_qlora_fast.yaml's settings through train.py: transformers' every_n_layers=2 reaches the decoder
    layers through TRL's 4-bit preparation (the even layers recompute, the odd keep their activations), and
    cudnn_attention false switches SDPA's cuDNN backend off for the run only."""
    import torch
    from transformers import TrainerCallback

    from nli_cot_hub.train.sft import main

    seen = {}

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["layers"] = [layer.gradient_checkpointing for layer in model.get_decoder().layers]
            seen["cudnn"] = torch.backends.cuda.cudnn_sdp_enabled()

    args = parse(
        *tiny_run_args(
            tiny_model,
            tmp_path / "q",
            *("--max_steps", "1", "--warmup_steps", "0", "--max_train_samples", "2", "--no_model_card"),
            *("--load_in_4bit", "true", "--lora_dropout", "0", "--cudnn_attention", "false"),
            *("--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs", '{"every_n_layers": 2}'),
        )
    )
    outcome = main(*args, callbacks=[Record()])
    assert outcome["status"] == "completed"
    assert seen == {"layers": [True, False], "cudnn": False}
    assert torch.backends.cuda.cudnn_sdp_enabled()  # the switch is the run's, not the process's
    adapter = read_adapter(tmp_path / "q")
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())


def test_kept_layers_override_every_n_layers_and_need_checkpointing(tiny_model, tmp_path):
    """kept_layers sets which layers skip checkpointing after the Trainer has applied every_n_layers; without
    gradient checkpointing, together with kept_layer_tokens, or above the model's layer count it is refused
    before any weights load."""
    from transformers import TrainerCallback

    from nli_cot_hub.train.configs import RecipeError
    from nli_cot_hub.train.sft import main

    seen = {}

    class Record(TrainerCallback):  # at the first step, after every callback's on_train_begin
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            seen.setdefault("layers", [layer.gradient_checkpointing for layer in model.get_decoder().layers])

    common = ("--max_steps", "1", "--warmup_steps", "0", "--max_train_samples", "2", "--no_model_card")
    args = parse(
        *tiny_run_args(tiny_model, tmp_path / "k", *common, "--gradient_checkpointing", "true"),
        *("--gradient_checkpointing_kwargs", '{"every_n_layers": 2}', "--kept_layers", "0"),
    )
    assert main(*args, callbacks=[Record()])["status"] == "completed"
    assert seen == {"layers": [True, True]}  # every_n_layers 2 alone leaves layer 1 unchecked

    args = parse(*tiny_run_args(tiny_model, tmp_path / "r", *common, "--gradient_checkpointing", "false"))
    args[0].kept_layers = 1
    with pytest.raises(RecipeError, match="kept_layers needs gradient_checkpointing"):
        main(*args)
    args = parse(*tiny_run_args(tiny_model, tmp_path / "r", *common, "--gradient_checkpointing", "true"))
    args[0].kept_layers, args[0].kept_layer_tokens = 1, 4096
    with pytest.raises(RecipeError, match="give one of them"):
        main(*args)
    args[0].kept_layers, args[0].kept_layer_tokens = 3, None
    with pytest.raises(RecipeError, match="kept_layers=3: the model has 2 decoder layers"):
        main(*args)  # read from the model's config, before its weights load
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("budget", "expected"), [(10**9, [False, False]), (0, [True, True])])
def test_a_token_budget_sets_the_kept_layers_of_each_micro_batch_through_train_py(
    tiny_model, tmp_path, budget, expected
):
    from transformers import TrainerCallback

    from nli_cot_hub.train.sft import main

    seen = {}

    class Record(TrainerCallback):  # after the step's last forward, which the budget's hook saw
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen["layers"] = [layer.gradient_checkpointing for layer in model.get_decoder().layers]

    common = ("--max_steps", "1", "--warmup_steps", "0", "--max_train_samples", "2", "--no_model_card")
    args = parse(
        *tiny_run_args(tiny_model, tmp_path / "b", *common, "--gradient_checkpointing", "true"),
        *("--kept_layer_tokens", str(budget)),
    )
    assert main(*args, callbacks=[Record()])["status"] == "completed"
    assert seen == {"layers": expected}


# ---------------------------------------------------------------------------------------------
# The schedule, planned before the model loads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "examples,batch,processes,accumulation,drop_last,epochs,max_steps",
    [
        (1906, 32, 1, 2, False, 2, -1),
        (1906, 32, 2, 1, False, 2, -1),
        (80, 32, 1, 2, False, 2, -1),
        (61, 4, 2, 3, False, 1.5, -1),
        (61, 4, 2, 3, True, 3, -1),
        (7, 2, 3, 1, False, 1, -1),
        (100, 8, 1, 4, False, 1, 9),
    ],
)
def test_planned_steps_are_the_trainers(
    tmp_path, examples, batch, processes, accumulation, drop_last, epochs, max_steps
):
    """The per-process micro-batches are the length of accelerate's sharded batch sampler, and the optimizer
    steps are what the Trainer computes from that DataLoader."""
    import torch
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
    from transformers import Trainer, TrainingArguments

    from nli_cot_hub.train.schedule import batches_per_process, optimizer_steps

    sampler = BatchSampler(SequentialSampler(range(examples)), batch, drop_last)
    shard = (
        BatchSamplerShard(sampler, num_processes=processes, process_index=0, even_batches=True)
        if processes > 1
        else sampler
    )
    loader = DataLoader(list(range(examples)), batch_sampler=shard)
    assert batches_per_process(examples, batch, processes, drop_last) == len(loader)

    args = TrainingArguments(
        str(tmp_path),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=epochs,
        max_steps=max_steps,
        dataloader_drop_last=drop_last,
        use_cpu=True,
        report_to="none",
    )
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    trainer_steps = trainer.set_initial_training_values(args, loader)[-1]
    assert optimizer_steps(len(loader), accumulation, epochs, max_steps) == trainer_steps


@pytest.fixture(scope="module")
def built_cot(tmp_path_factory) -> dict[str, Path]:
    """The recipe's data: the author's artifacts built as the README says, with and without their dev thoughts."""
    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app

    folders = {}
    for name, extra in (("sample", []), ("full", ["--import-dev-thoughts"])):
        folders[name] = tmp_path_factory.mktemp("cot") / name
        done = CliRunner().invoke(
            build_app(),
            [
                "build",
                "--import-artifacts",
                str(shared("comp34812_nli_jd0g_cot")),
                *extra,
                "--output-dir",
                str(folders[name]),
            ],
        )
        assert done.exit_code == 0, done.output
    return folders


@pytest.mark.parametrize(
    "recipe",
    [
        "recipes/mistral7b_qlora.yaml",
        "recipes/mistral7b_qlora_r16.yaml",
        "recipes/mistral7b_lora_bf16.yaml",
        "recipes/mistral7b_qlora_fast.yaml",
    ],
)
def test_mistral_recipes_warm_up_peak_and_decay_on_the_built_data(built_cot, recipe):
    from nli_cot_hub.train import data as train_data
    from nli_cot_hub.train import schedule

    for data, total, warmup in (("full", 60, 6), ("sample", 4, 1)):
        script, args, _ = parse("--dataset_name", str(built_cot[data]), "--use_cpu", "true", recipe=recipe)
        args.gradient_accumulation_steps = schedule.accumulation_steps(
            script.effective_batch_size, args.per_device_train_batch_size, args.world_size
        )
        train, _ = train_data.prepare_splits(script, args.seed, want_eval=True)
        plan = schedule.plan_schedule(args, len(train))
        assert (plan.total_steps, plan.warmup_steps) == (total, warmup), data
        schedule.check_schedule(plan)
        rates = schedule.learning_rates(
            args.learning_rate, plan.warmup_steps, plan.total_steps, args.lr_scheduler_type
        )
        assert rates.index(max(rates)) == warmup and max(rates) == pytest.approx(args.learning_rate)
        assert rates[-1] < 0.3 * args.learning_rate  # the cosine decay happens


def test_other_recipes_fit_their_data():
    from nli_cot_hub.train import data, schedule

    script, args, _ = parse()
    train, _ = data.prepare_splits(script, args.seed, want_eval=True)
    plan = schedule.plan_schedule(args, len(train))
    schedule.check_schedule(plan)
    assert 0 < plan.warmup_steps < plan.total_steps
    script, args, _ = parse(
        "--dataset_name",
        str(shared(SAMPLE)),
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        recipe="experiments/recipe_smollm2_h100.yaml",
    )
    schedule.check_schedule(schedule.plan_schedule(args, 1884))  # builds/jd0g's original train split
    schedule.check_schedule(
        schedule.plan_schedule(
            parse(
                "--use_cpu",
                "true",
                "--bf16",
                "false",
                "--max_steps",
                "2",
                recipe="experiments/recipe_smollm2_h100.yaml",
            )[1],
            8,
        )
    )


def test_a_long_warm_up_is_refused_before_the_model_loads(built_cot):
    """The original 150 warm-up steps against the 60 the data give: one line naming the numbers and the fix,
    exit 2, before the tokenizer or the (here unavailable) 7B model loads."""
    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app

    done = CliRunner().invoke(
        build_app(),
        [
            "train",
            "--config",
            str(REPO / "recipes/mistral7b_qlora.yaml"),
            "--dataset_name",
            str(built_cot["full"]),
            "--warmup_steps",
            "150",
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--use_liger_kernel",
            "false",
        ],
    )
    assert done.exit_code == 2, done.output
    assert (
        "warm-up of 150 optimizer steps is more than 20% of the 60 optimizer steps this run takes (1906 train examples"
    ) in done.output
    assert "--warmup_steps to at most 12" in done.output and "Traceback" not in done.output
    shared_too_long = CliRunner().invoke(
        build_app(),
        [
            "train",
            "--config",
            str(REPO / "recipes/mistral7b_qlora.yaml"),
            "--dataset_name",
            str(built_cot["full"]),
            "--warmup_ratio",
            "0.5",
            "--warmup_steps",
            "0",
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--use_liger_kernel",
            "false",
        ],
    )
    assert shared_too_long.exit_code == 2 and "warm-up share 0.5 is more than 20%" in shared_too_long.output


def test_warmup_ratio_is_a_share_of_the_steps():
    from nli_cot_hub.train import schedule
    from nli_cot_hub.train.configs import RecipeError

    script, args, _ = parse("--warmup_ratio", "0.25", "--warmup_steps", "0", "--max_steps", "10")
    schedule.apply_warmup_ratio(script, args)
    plan = schedule.plan_schedule(args, 60)
    assert (plan.total_steps, plan.warmup_steps, plan.warmup_share) == (10, 3, 0.25)  # ceil, as the Trainer
    with pytest.raises(RecipeError, match="more than 20%"):
        schedule.check_schedule(plan)
    script, args, _ = parse("--warmup_ratio", "0.1")  # the demo recipe's own warmup_steps is set too
    with pytest.raises(RecipeError, match="both set"):
        schedule.apply_warmup_ratio(script, args)


def test_liger_without_its_package_fails_before_loading():
    import importlib.util

    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app

    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    done = CliRunner().invoke(
        build_app(),
        ["train", "--config", str(REPO / "recipes/mistral7b_qlora.yaml"), "--use_cpu", "true", "--bf16", "false"],
    )
    assert done.exit_code == 2
    assert "use_liger_kernel: true needs the 'liger_kernel' package" in done.output
    assert "pip install -e '.[gpu]'" in done.output and "Traceback" not in done.output


@pytest.mark.parametrize(
    "launcher,env",
    [
        ("fsdp", {"ACCELERATE_USE_FSDP": "true"}),
        ("zero3", {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}),
        (None, {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}),
    ],
)
def test_sharded_launchers_store_4bit_weights_in_the_compute_dtype(monkeypatch, launcher, env):
    """accelerate launch sets these variables from the FSDP / DeepSpeed configs; the 4-bit storage dtype then
    follows dtype without a flag, and ZeRO-3 (which refuses a device_map) gets none."""
    import torch

    from nli_cot_hub.train import model as loading

    _, args, model = parse("--use_cpu", "true", "--bf16", "false", recipe="recipes/mistral7b_qlora.yaml")
    _, _, explicit = parse(
        "--use_cpu", "true", "--bnb_4bit_quant_storage", "float32", recipe="recipes/mistral7b_qlora.yaml"
    )
    for name, value in env.items():  # after parsing: TrainingArguments would need deepspeed installed
        monkeypatch.setenv(name, value)
    assert loading.sharded_loading() == launcher
    storage = loading.quantization_config(model).bnb_4bit_quant_storage
    assert storage == (torch.bfloat16 if launcher else torch.uint8)
    args.model_init_kwargs = {"device_map": {"": 0}}
    kwargs = loading.model_init_kwargs(model, args)
    assert ("device_map" in kwargs) == (launcher != "zero3")
    assert loading.quantization_config(explicit).bnb_4bit_quant_storage == torch.float32


def test_fsdp_on_cpu_is_refused(monkeypatch):
    from nli_cot_hub.train.configs import RecipeError
    from nli_cot_hub.train.model import check_launch

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    _, args, _ = parse("--use_cpu", "true")
    with pytest.raises(RecipeError, match="FSDP needs GPUs"):
        check_launch(args)


# ---------------------------------------------------------------------------------------------
# Several CPU processes on the Mistral architecture (accelerate launch, gloo)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mistral_with_template(tmp_path_factory) -> str:
    from nli_cot_hub.chat_template import MISTRAL_INST_TEMPLATE
    from tests.tiny_mistral import build_tiny_mistral

    return build_tiny_mistral(tmp_path_factory.mktemp("tiny-mistral-template"), chat_template=MISTRAL_INST_TEMPLATE)


def accelerate_launch(
    config: str, output: Path, model: str, *extra: str, launch_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / config),
        "--num_processes",
        "2",
        "--main_process_port",
        str(29500 + os.getpid() % 500),
        *launch_options,
        str(REPO / "train.py"),
        "--config",
        str(REPO / "recipes/smollm2_demo.yaml"),
        *tiny_run_args(
            model,
            output,
            "--per_device_train_batch_size",
            "1",
            "--effective_batch_size",
            "4",
            "--max_steps",
            "2",
            "--warmup_steps",
            "0",
            "--save_steps",
            "1",
            "--no_model_card",
        ),
        *extra,
    ]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_saves_an_adapter_that_loads_and_generates(tiny_mistral_with_template, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = tmp_path / "ddp"
    # One epoch of 10 rows, not max_steps: 5 micro-batches per process, accumulation 2 (effective batch
    # 4 = 1 x 2 processes x 2), so 3 optimizer steps, the last on a short accumulation round.
    done = accelerate_launch(
        "accelerate_configs/multi_cpu.yaml",
        output,
        tiny_mistral_with_template,
        "--max_steps",
        "-1",
        "--num_train_epochs",
        "1",
        "--max_train_samples",
        "10",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((output / "training_metrics.json").read_text())["summary"]
    assert summary["processes"] == 2 and summary["global_steps"] == summary["planned_steps"] == 3
    assert "5 micro-batches per process per epoch, accumulation 2, 2 processes" in done.stdout
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (output / "checkpoint-3").iterdir()}

    base = AutoModelForCausalLM.from_pretrained(tiny_mistral_with_template, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, output)
    adapter = read_adapter(output)
    name = next(n for n in adapter if "lora_B" in n)
    assert adapter[name].abs().sum() > 0
    assert torch.equal(
        dict(model.named_parameters())[name.replace(".weight", ".default.weight")].detach(), adapter[name]
    )
    tokenizer = AutoTokenizer.from_pretrained(output)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Premise: A dog runs.\nHypothesis: An animal moves."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 5


@pytest.mark.slow
def test_fsdp_launch_on_cpu_is_refused_in_one_line(tiny_mistral_with_template, tmp_path):
    """accelerate turns CPU processes into plain DDP even under an FSDP config (its FSDP switch covers only
    GPU-like devices), so train.py refuses instead of silently not sharding."""
    done = accelerate_launch(
        "accelerate_configs/fsdp_qlora.yaml", tmp_path / "fsdp", tiny_mistral_with_template, "--use_cpu", "true"
    )
    assert done.returncode != 0
    assert "error: FSDP needs GPUs" in done.stderr and not (tmp_path / "fsdp" / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_on_two_cpu_processes_saves_a_qlora_adapter(tiny_mistral_with_template, tmp_path, stage):
    """DeepSpeed ZeRO-2/3 (its CPU accelerator, gloo) with the 4-bit base: under ZeRO-3 the model loads without a
    device_map and the 4-bit storage follows dtype, and the final save gathers the adapter. deepspeed is in the gpu
    extra; its sdist installs on CPU with
    `pip install --no-build-isolation deepspeed hjson einops ninja py-cpuinfo msgpack`."""
    pytest.importorskip("deepspeed")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    output = tmp_path / f"zero{stage}"
    done = accelerate_launch(
        f"accelerate_configs/deepspeed_zero{stage}.yaml",
        output,
        tiny_mistral_with_template,
        "--use_cpu",
        "true",
        "--load_in_4bit",
        "true",
        launch_options=("--mixed_precision", "no"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (output / "checkpoint-2" / "global_step2").is_dir()  # a real DeepSpeed checkpoint
    summary = json.loads((output / "training_metrics.json").read_text())["summary"]
    assert summary["processes"] == 2 and summary["global_steps"] == 2
    adapter = read_adapter(output)
    assert adapter and all(tensor.numel() > 0 for tensor in adapter.values())  # gathered, not empty shards
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_mistral_with_template, dtype=torch.float32), output
    )
    generated = model.generate(input_ids=torch.tensor([[1, 3, 1040, 4]]), max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == 7


def test_fsdp_final_save_switches_the_plugin_to_a_full_state_dict():
    """The sharded config of fsdp_qlora.yaml becomes a full, rank-0, CPU-offloaded one for the final save;
    accelerate's set_state_dict_type alone would keep the sharded config objects."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType

    from nli_cot_hub.train.model import switch_to_full_state_dict

    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=1, state_dict_type="SHARDED_STATE_DICT", sync_module_states=False, cpu_ram_efficient_loading=False
    )
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    switch_to_full_state_dict(plugin)
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert isinstance(plugin.state_dict_config, FullStateDictConfig)
    assert plugin.state_dict_config.rank0_only and plugin.state_dict_config.offload_to_cpu
    assert isinstance(plugin.optim_state_dict_config, FullOptimStateDictConfig)


# Completion formats and the label-weighted loss, on TRL's own tokenised examples
# ---------------------------------------------------------------------------------------------

FORMAT_ROWS = [
    {
        "premise": "A man sleeps on a bench.",
        "hypothesis": "A man is awake.",
        "label": 0,
        "thought_process": 'He sleeps: "awake" (1) cannot hold, so 0.',
    },
    {
        "premise": "A dog runs in a park.",
        "hypothesis": "An animal moves.",
        "label": 1,
        "thought_process": "A dog is an animal and running is moving.",
    },
]


def format_trainer(model_path: str, completion_format: str, tmp_path: Path, label_weight: float = 1.0):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from nli_cot_hub.train.data import build_examples
    from nli_cot_hub.train.loss import label_token_pattern, label_weighted
    from nli_cot_hub.train.model import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    data = build_examples(Dataset.from_list(FORMAT_ROWS), "rows", "train", completion_format).examples
    config = SFTConfig(
        output_dir=str(tmp_path / completion_format),
        max_length=256,
        report_to="none",
        use_cpu=True,
        completion_only_loss=True,
        per_device_train_batch_size=4,
    )
    model = AutoModelForCausalLM.from_pretrained(model_path)
    trainer = label_weighted(SFTTrainer)(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    trainer.label_pattern, trainer.label_weight = label_token_pattern(data, tokenizer), label_weight
    return trainer, data, tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("completion_format", ["thought_first", "label_first", "multitask", "label_only"])
def test_each_format_trains_on_its_completion_and_weights_land_on_the_label_token(
    tiny_model, tmp_path, completion_format
):
    import torch

    from nli_cot_hub.train.loss import label_loss_weights, label_token_pattern

    trainer, data, tokenizer = format_trainer(tiny_model, completion_format, tmp_path)
    pattern = label_token_pattern(data, tokenizer)
    assert len(trainer.train_dataset) == len(data) == (4 if completion_format == "multitask" else 2)
    completions = {example["completion"][0]["content"] for example in data}
    for example in trainer.train_dataset:
        labels = torch.tensor([example["labels"]])
        trained = [token for token in example["labels"] if token != -100]
        text = tokenizer.decode(trained)
        # Token by token: the loss covers exactly the completion and the end of the turn, no prompt token.
        assert text.split("<|im_end|>")[0] in completions and text.rstrip().endswith("<|im_end|>")
        assert example["labels"][: len(example["labels"]) - len(trained)] == [-100] * (
            len(example["labels"]) - len(trained)
        )
        weights = label_loss_weights(labels, pattern, 7.0)[0].tolist()
        weighted = [i for i, w in enumerate(weights) if w == 7.0]
        answer = json.loads(text.split("<|im_end|>")[0])
        if "predicted_label" in answer:
            assert len(weighted) == 1  # the label value and nothing else, not the digits in the thought
            assert tokenizer.decode([example["labels"][weighted[0]]]) == str(answer["predicted_label"])
        else:  # multitask's explain task has no label token
            assert weighted == []
        assert all(w == 1.0 for i, w in enumerate(weights) if example["labels"][i] != -100 and i not in weighted)
        assert all(w == 0.0 for i, w in enumerate(weights) if example["labels"][i] == -100)


@pytest.mark.slow
def test_weighted_loss_at_weight_one_is_trls_loss_and_a_weight_moves_it(tiny_model, tmp_path):
    import torch
    from trl import SFTTrainer

    plain, _, _ = format_trainer(tiny_model, "thought_first", tmp_path)
    batch = plain.data_collator([plain.train_dataset[i] for i in range(len(plain.train_dataset))])
    losses = {}
    with torch.no_grad():
        plain.model.eval()
        losses["trl"] = float(SFTTrainer.compute_loss(plain, plain.model, dict(batch)))
        for weight in (1.0, 1.0 + 1e-9, 10.0):  # 1 + 1e-9 takes the weighted path with (almost) no change
            plain.label_weight = weight
            losses[weight] = float(plain.compute_loss(plain.model, dict(batch)))
    assert losses[1.0] == losses["trl"]
    assert losses[1.0 + 1e-9] == pytest.approx(losses["trl"], rel=1e-5)
    assert losses[10.0] > losses["trl"]


def test_label_token_is_found_under_the_mistral_tokenizer_too():
    """The label weights and the read-out split rely on token boundaries: check them under Mistral-7B-v0.3's
    tokenizer (sentencepiece, digits split) as well as SmolLM2's (byte-level BPE, above)."""
    import torch
    from datasets import Dataset

    from nli_cot_hub.formats import prompt_messages
    from nli_cot_hub.readout import label_split
    from nli_cot_hub.train.data import build_examples
    from nli_cot_hub.train.loss import label_loss_weights, label_token_pattern
    from nli_cot_hub.train.model import load_tokenizer

    tokenizer = load_tokenizer("mistralai/Mistral-7B-v0.3", "mistral-common:v3")
    for completion_format in ("thought_first", "label_first", "multitask", "label_only"):
        data = build_examples(Dataset.from_list(FORMAT_ROWS), "rows", "train", completion_format).examples
        pattern = label_token_pattern(data, tokenizer)
        assert {tokenizer.decode([value]) for value in pattern.values} == {"0", "1"}
        for example in data:
            ids = tokenizer.apply_chat_template(
                example["prompt"] + example["completion"], tokenize=True, return_dict=True
            )["input_ids"]
            prompt = len(
                tokenizer.apply_chat_template(
                    example["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True
                )["input_ids"]
            )
            # As TRL builds labels: the prompt (whose system message shows the JSON too) is -100.
            labels = [-100] * prompt + ids[prompt:]
            weights = label_loss_weights(torch.tensor([labels]), pattern, 4.0)[0]
            answer = json.loads(example["completion"][0]["content"])
            expected = 1 if "predicted_label" in answer else 0
            assert int((weights == 4.0).sum()) == expected
        context = tokenizer.apply_chat_template(
            prompt_messages("A dog runs.", "An animal moves.", completion_format),
            tokenize=False,
            add_generation_prompt=True,
        )
        _, zero, one = label_split(tokenizer, context, completion_format, "A thought with 1 and 0.")
        assert (tokenizer.decode([zero]), tokenizer.decode([one])) == ("0", "1")
