"""The one chat rendering rule (nli_cot_hub/chat_template.py) against real templates: the base Mistral-7B-v0.3
(no template), Mistral-7B-Instruct-v0.3's and v0.2's Hub templates, mistral-common's own rendering, SmolLM2's
(the embedded model) and Llama-3's. For each, TRL's tokenization masks exactly the answer and the inference
prompt is the training prompt, token for token."""

from __future__ import annotations

from pathlib import Path

import pytest

from nli_cot_hub.chat_format import prompt_messages, training_example
from nli_cot_hub.chat_template import (
    FOLD_SEPARATOR,
    GENERIC_TEMPLATE,
    MISTRAL_INST_TEMPLATE,
    PROBE_SYSTEM,
    apply_chat_rule,
    choose_rule,
    encode_prompts,
    fold_for_endpoint,
    fold_system,
    template_problem,
    without_leading_bos,
)

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
EXAMPLE = training_example(
    "A man is sleeping on a bench in the park.", "A person rests.", "A man sleeping is a person resting.", 1
)
# Llama 3's pre-tokenizer: newline runs stay one piece, so "\n\n" before the answer splits the same way
# with and without the answer (GPT-2's rule, SmolLM2's, would split it differently).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def mistral_tokenizer(chat_template: str | None):
    from nli_cot_hub.train.model import mistral_common_tokenizer

    tokenizer = mistral_common_tokenizer("v3")  # the real Mistral-7B-v0.3 vocabulary
    tokenizer.chat_template = chat_template
    return tokenizer


def smollm2_tokenizer(embedded_model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_path)


def llama3_tokenizer(embedded_model_path: str):
    """A Llama-3-style tokenizer: Llama 3's pre-tokenizer and header/turn special tokens, SmolLM2's merges."""
    from tokenizers import Regex, pre_tokenizers

    tokenizer = smollm2_tokenizer(embedded_model_path)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.add_special_tokens(
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
        }
    )
    tokenizer.chat_template = template("llama_3_8b_instruct.jinja")
    return tokenizer


@pytest.fixture(scope="module")
def tokenizers(embedded_model_path) -> dict:
    return {
        "mistral-7b-v0.3 base": mistral_tokenizer(None),
        "mistral-7b-instruct-v0.3": mistral_tokenizer(template("mistral_7b_instruct_v0.3.jinja")),
        "mistral-7b-instruct-v0.2": mistral_tokenizer(template("mistral_7b_instruct_v0.2.jinja")),
        "smollm2 (embedded)": smollm2_tokenizer(embedded_model_path),
        "llama-3": llama3_tokenizer(embedded_model_path),
    }


EXPECTED_RULES = {
    "mistral-7b-v0.3 base": ("own", "no chat template"),
    "mistral-7b-instruct-v0.3": ("folded", "drops the system message when the answer follows"),
    "mistral-7b-instruct-v0.2": ("folded", "Conversation roles must alternate"),
    "smollm2 (embedded)": ("native", ""),
    "llama-3": ("native", ""),
}


@pytest.mark.parametrize("name", list(EXPECTED_RULES))
def test_the_rule_is_decided_by_probing_each_template(tokenizers, name):
    rule, reason = EXPECTED_RULES[name]
    chosen = choose_rule(tokenizers[name])
    assert chosen.rule == rule and reason in chosen.reason
    if rule == "own":  # the v3 vocabulary has [INST] tokens: Mistral's own format, not the generic one
        assert chosen.template == MISTRAL_INST_TEMPLATE


def test_the_hub_instruct_template_as_is_trains_without_the_system_prompt(tokenizers):
    """The defect the rule exists for: Mistral's v0.3 template writes the system text only when the user
    turn is last, so the training sequence (prompt + answer) lacks the instructions inference sends."""
    tokenizer = tokenizers["mistral-7b-instruct-v0.3"]
    prompt = tokenizer.apply_chat_template(EXAMPLE["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(EXAMPLE["prompt"] + EXAMPLE["completion"], tokenize=False)
    system = EXAMPLE["prompt"][0]["content"]
    assert system in prompt and system not in full
    assert template_problem(tokenizer, tokenizer.chat_template) is not None
    with pytest.raises(Exception, match="roles must alternate"):
        tokenizers["mistral-7b-instruct-v0.2"].apply_chat_template(EXAMPLE["prompt"], tokenize=False)


def sft_tokenized(model_path: str, tokenizer, example: dict, output_dir: Path) -> dict:
    """The example as SFTTrainer prepares it for completion-only loss, through its collator: TRL's own
    tokenization, prompt/completion boundary and labels (the model only has to exist; it is not run)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output_dir),
        completion_only_loss=True,
        max_length=None,
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_path),
        args=args,
        train_dataset=Dataset.from_list([example]),
        processing_class=tokenizer,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    return {"input_ids": batch["input_ids"][0].tolist(), "labels": batch["labels"][0].tolist()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED_RULES))
def test_loss_mask_covers_exactly_the_answer_and_inference_prompt_is_the_training_prompt(
    tokenizers, tiny_mistral_path, tmp_path, name
):
    import copy

    from nli_cot_hub.train.model import ensure_distinct_pad

    tokenizer = copy.deepcopy(tokenizers[name])
    ensure_distinct_pad(tokenizer)
    apply_chat_rule(tokenizer)
    tokenized = sft_tokenized(tiny_mistral_path, tokenizer, EXAMPLE, tmp_path)
    ids, labels = tokenized["input_ids"], tokenized["labels"]
    trained = [token for token, label in zip(ids, labels) if label != -100]
    masked = [token for token, label in zip(ids, labels) if label == -100]
    inference_prompt = encode_prompts(tokenizer, [EXAMPLE["prompt"]])[0]
    # The prompt is masked whole, and it is exactly what the local engine sends at inference.
    assert masked == inference_prompt == ids[: len(inference_prompt)]
    # The loss covers the answer and its end of turn, nothing of the prompt.
    answer = EXAMPLE["completion"][0]["content"]
    assert tokenizer.decode(trained, skip_special_tokens=False).strip() == answer + tokenizer.eos_token
    # The training text holds the system instructions, wherever the template put them.
    assert EXAMPLE["prompt"][0]["content"] in tokenizer.decode(ids)


@pytest.mark.parametrize("name", ["mistral-7b-v0.3 base", "mistral-7b-instruct-v0.3"])
def test_mistral_renderings_match_mistral_common_token_for_token(tokenizers, tmp_path, name):
    """transformers' mistral-common backend, built offline from the package's v3 tokenizer file, is the
    reference: it serves a prompt in test mode and tokenizes prompt + answer in fine-tuning mode."""
    import copy
    import shutil

    import mistral_common
    from transformers.tokenization_mistral_common import MistralCommonBackend

    from nli_cot_hub.train.model import MISTRAL_COMMON_FILES

    folder = tmp_path / "mistral-common"
    folder.mkdir()
    shutil.copy(
        Path(mistral_common.__file__).parent / "data" / MISTRAL_COMMON_FILES["v3"], folder / "tokenizer.model.v3"
    )
    serving = MistralCommonBackend.from_pretrained(str(folder), mode="test")
    finetuning = MistralCommonBackend.from_pretrained(str(folder), mode="finetuning")
    tokenizer = apply_chat_rule(copy.deepcopy(tokenizers[name]))
    prompt, full = EXAMPLE["prompt"], EXAMPLE["prompt"] + EXAMPLE["completion"]
    assert encode_prompts(tokenizer, [prompt])[0] == serving.apply_chat_template(prompt)["input_ids"]
    assert (
        tokenizer.apply_chat_template(full, return_dict=True)["input_ids"]
        == finetuning.apply_chat_template(full)["input_ids"]
    )
    # The backend itself cannot be a training tokenizer (it takes no template): the rule says so clearly.
    with pytest.raises(ValueError, match="mistral-common backend"):
        apply_chat_rule(serving)


def test_rule_is_idempotent_and_travels_with_the_saved_tokenizer(tokenizers, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = apply_chat_rule(mistral_tokenizer(template("mistral_7b_instruct_v0.3.jinja")))
    folded = tokenizer.chat_template
    assert apply_chat_rule(tokenizer).chat_template == folded
    tokenizer.save_pretrained(tmp_path / "adapter")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    assert choose_rule(reloaded).rule == "native" and reloaded.chat_template == folded


def test_generic_template_for_tokenizers_without_chat_tokens(embedded_model_path):
    tokenizer = smollm2_tokenizer(embedded_model_path)
    tokenizer.chat_template = None
    chosen = choose_rule(tokenizer)
    assert (chosen.rule, chosen.template) == ("own", GENERIC_TEMPLATE)
    apply_chat_rule(tokenizer)
    text = tokenizer.apply_chat_template(EXAMPLE["prompt"], tokenize=False, add_generation_prompt=True)
    assert text.index("SYSTEM:\n") < text.index("USER:\n") < text.index("ASSISTANT:\n")


def test_fold_system_puts_the_instructions_at_the_head_of_the_first_user_turn():
    messages = prompt_messages("A dog runs.", "An animal moves.")
    folded = fold_system(messages)
    assert [m["role"] for m in folded] == ["user"]
    assert folded[0]["content"] == messages[0]["content"] + FOLD_SEPARATOR + messages[1]["content"]
    assert fold_system(messages[1:]) == messages[1:]
    assert messages[0]["role"] == "system"  # the input is left as it was


def test_endpoints_fold_only_when_the_served_template_needs_it(embedded_model_path, tmp_path):
    mistral_tokenizer(template("mistral_7b_instruct_v0.3.jinja")).save_pretrained(tmp_path / "instruct")
    assert fold_for_endpoint(str(tmp_path / "instruct")) is True
    assert fold_for_endpoint(embedded_model_path) is False
    assert fold_for_endpoint("embedded") is False
    assert fold_for_endpoint("open-mistral-7b") is False  # a hosted API model: its server places it
    assert fold_for_endpoint("open-mistral-7b", "fold") is True
    assert fold_for_endpoint(str(tmp_path / "instruct"), "keep") is False
    with pytest.raises(ValueError, match="auto"):
        fold_for_endpoint("embedded", "sometimes")


def test_tgi_prompt_loses_the_template_bos_only_where_the_tokenizer_adds_one(tokenizers):
    mistral = apply_chat_rule(mistral_tokenizer(None))
    text = mistral.apply_chat_template(EXAMPLE["prompt"], tokenize=False, add_generation_prompt=True)
    stripped = without_leading_bos(mistral, text)
    assert text.startswith("<s>[INST]") and stripped.startswith("[INST]")
    assert mistral(stripped)["input_ids"] == encode_prompts(mistral, [EXAMPLE["prompt"]])[0]
    smollm2 = tokenizers["smollm2 (embedded)"]
    text = smollm2.apply_chat_template(EXAMPLE["prompt"], tokenize=False, add_generation_prompt=True)
    assert without_leading_bos(smollm2, text) == text  # its template starts with <|im_start|>: nothing to cut


def test_probe_text_is_what_the_checks_look_for(tokenizers):
    tokenizer = tokenizers["smollm2 (embedded)"]
    assert template_problem(tokenizer, None) == "no chat template"
    assert PROBE_SYSTEM in tokenizer.apply_chat_template(
        [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": "x"}], tokenize=False
    )
