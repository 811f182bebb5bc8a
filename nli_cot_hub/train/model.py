"""The tokenizer and the model of a run: the Mistral tokenizer from mistral-common, a pad token other than EOS,
the recipe's 4-bit quantization, random-weight checkpoints for benchmarks, and what FSDP / ZeRO-3 need
(one dtype for sharded parameters, no fixed device, a full state dict for the final save)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from nli_cot_hub.chat_template import MISTRAL_INST_TEMPLATE
from nli_cot_hub.train.configs import RecipeError

MISTRAL_COMMON_PREFIX = "mistral-common:"
# Mistral-7B-v0.3 uses the v3 SentencePiece vocabulary (32,768 tokens) that mistral-common ships.
MISTRAL_COMMON_FILES = {"v3": "mistral_instruct_tokenizer_240323.model.v3"}


def mistral_common_tokenizer(version: str = "v3"):
    """A transformers tokenizer for Mistral models built from the tokenizer file that the
    ``mistral-common`` package ships (no Hub download), with the v3 chat template and ``<unk>`` as pad.

    SentencePiece conversion needs ``sentencepiece`` and ``protobuf``. Ids match mistral-common's own
    encoder on ordinary text; runs of several spaces after a newline may split differently.
    """
    import shutil
    import tempfile

    import mistral_common
    from transformers import LlamaTokenizer

    if version not in MISTRAL_COMMON_FILES:
        raise ValueError(f"unknown mistral-common tokenizer {version!r}; known: {', '.join(MISTRAL_COMMON_FILES)}")
    source = Path(mistral_common.__file__).parent / "data" / MISTRAL_COMMON_FILES[version]
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(source, Path(folder) / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=False, add_bos_token=True, add_eos_token=False)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.chat_template = MISTRAL_INST_TEMPLATE
    tokenizer.name_or_path = f"{MISTRAL_COMMON_PREFIX}{version}"
    return tokenizer


def ensure_distinct_pad(tokenizer) -> None:
    """Padding with EOS masks EOS out of the loss, and the model never learns to stop."""
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    for candidate in ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", tokenizer.unk_token):
        if candidate and candidate != tokenizer.eos_token and candidate in tokenizer.get_vocab():
            tokenizer.pad_token = candidate
            return
    raise ValueError(
        f"tokenizer {tokenizer.name_or_path!r} has no token to pad with other than EOS; "
        "set one with --tokenizer_name_or_path or add a pad token to it"
    )


def load_tokenizer(model_path: str, tokenizer_name: str | None = None, revision: str = "main"):
    """The training tokenizer, with a pad token other than EOS and the chat template the project's one
    rendering rule chooses (``nli_cot_hub.chat_template``); it is saved with the adapter, so inference
    renders prompts exactly as training did."""
    from transformers import AutoTokenizer

    from nli_cot_hub.chat_template import apply_chat_rule
    from nli_cot_hub.models import resolve_model

    if tokenizer_name and tokenizer_name.startswith(MISTRAL_COMMON_PREFIX):
        tokenizer = mistral_common_tokenizer(tokenizer_name.removeprefix(MISTRAL_COMMON_PREFIX))
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_name or model_path), revision=revision)
    ensure_distinct_pad(tokenizer)
    return apply_chat_rule(tokenizer)


# Architectures known without any download, so --random_init works on a machine with no Hub access.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "mistralai/Mistral-7B-v0.3": dict(
        model_type="mistral",
        vocab_size=32768,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        sliding_window=None,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


def model_config(model_name: str):
    from transformers import CONFIG_MAPPING, AutoConfig

    if model_name in KNOWN_CONFIGS:
        values = dict(KNOWN_CONFIGS[model_name])
        return CONFIG_MAPPING[values.pop("model_type")](**values)
    from nli_cot_hub.models import resolve_model

    return AutoConfig.from_pretrained(resolve_model(model_name))


def random_init_checkpoint(model_name: str, dtype: str = "bfloat16", seed: int = 0) -> str:
    """BENCHMARKS ONLY: save a randomly initialised model of ``model_name``'s architecture once (in the
    cache) and return its folder, so the normal loading path, 4-bit quantization included, applies."""
    import torch
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.models import cache_dir

    slug = model_name.strip("/").replace("/", "--")
    target = cache_dir() / "random-init" / f"{slug}-{dtype}-seed{seed}"
    if (target / "config.json").exists():
        return str(target)
    torch.manual_seed(seed)
    config = model_config(model_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 7B parameters on the GPU takes seconds, not minutes
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    scratch = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(scratch)
    del model
    try:
        scratch.rename(target)
    except OSError:  # another process (e.g. the other rank of a launch) saved it first
        if not (target / "config.json").exists():
            raise
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def sharded_loading() -> str | None:
    """'fsdp' or 'zero3' when the launcher shards the parameters themselves (accelerate sets these
    variables from its config), else None. Sharded parameters must share one dtype and go on no fixed device."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    ):
        return "zero3"
    return None


def quantization_config(model_args):
    """TRL's BitsAndBytesConfig from the recipe. Under FSDP or ZeRO-3 the packed 4-bit weights are stored
    in the compute dtype unless the recipe says otherwise: both flatten every parameter of a unit into one
    tensor, which needs one dtype for the frozen 4-bit weights and the trainable LoRA weights alike."""
    from trl import get_quantization_config

    if model_args.load_in_4bit and model_args.bnb_4bit_quant_storage is None and sharded_loading():
        if model_args.dtype in (None, "auto"):
            raise RecipeError(
                f"{sharded_loading()} with load_in_4bit needs dtype set (e.g. --dtype bfloat16): the "
                "4-bit weights are stored in that dtype so they shard with the LoRA weights"
            )
        model_args = replace(model_args, bnb_4bit_quant_storage=model_args.dtype)
    return get_quantization_config(model_args)


def model_init_kwargs(model_args, training_args) -> dict[str, Any]:
    """Keyword arguments for ``AutoModelForCausalLM.from_pretrained`` from the recipe."""
    import torch

    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype),
    }
    quantization = quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        # FSDP and ZeRO-3 place the shards themselves (ZeRO-3 refuses a device_map); otherwise each
        # process puts its 4-bit copy on its own GPU.
        if sharded_loading() is None and torch.cuda.is_available():
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}
    if training_args.model_init_kwargs:
        kwargs.update(training_args.model_init_kwargs)
    if sharded_loading() == "zero3":
        kwargs.pop("device_map", None)
    return {key: value for key, value in kwargs.items() if value is not None}


def check_launch(training_args) -> None:
    """Two ways a multi-process launch silently becomes something else on a machine without GPUs."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise RecipeError(
            f"{launched} processes were launched but did not join one process group (no GPU here): "
            "pass --use_cpu true so they train together over gloo"
        )
    if sharded_loading() == "fsdp" and training_args.use_cpu:
        raise RecipeError(
            "FSDP needs GPUs: accelerate turns CPU processes into plain data parallel (gloo), "
            "so nothing would be sharded; use accelerate_configs/multi_cpu.yaml on CPU"
        )


@contextlib.contextmanager
def cudnn_attention(enabled: bool):
    """SDPA's cuDNN backend on or off while the block runs (a process-wide switch), as it was afterwards."""
    import torch

    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


# SFTConfig switches that need a package outside the base install, and the extra that provides it.
OPTIONAL_FEATURES = {"use_liger_kernel": ("liger_kernel", "gpu")}


def check_optional_features(training_args) -> None:
    """Before the model loads: a switched-on feature whose package is missing fails in one line, not after
    minutes of loading a 7B model."""
    import importlib.util

    for flag, (module, extra) in OPTIONAL_FEATURES.items():
        if getattr(training_args, flag, False) and importlib.util.find_spec(module) is None:
            raise RecipeError(
                f"{flag}: true needs the '{module}' package, which is missing; install the "
                f"'{extra}' extra (pip install -e '.[{extra}]') or pass --{flag} false"
            )


def load_model(model_args, training_args, random_init: bool = False, seed: int = 0):
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.models import resolve_model

    path = resolve_model(model_args.model_name_or_path)
    kwargs = model_init_kwargs(model_args, training_args)
    if random_init:
        path = random_init_checkpoint(model_args.model_name_or_path, "bfloat16", seed)
        kwargs.pop("revision", None)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def use_full_state_dict_for_saving(trainer) -> None:
    """FSDP checkpoints during training stay sharded (each process writes its part, and resume reads them),
    but ``Trainer.save_model`` writes no weights at all for a sharded state dict. For the final adapter
    the plugin switches to a full state dict, gathered on the main process, as the PEFT FSDP guides do."""
    if getattr(trainer, "is_fsdp_enabled", False):
        switch_to_full_state_dict(trainer.accelerator.state.fsdp_plugin)


def switch_to_full_state_dict(plugin) -> None:
    """An accelerate ``FullyShardedDataParallelPlugin`` from here on gathers full state dicts on the main
    process (offloaded to CPU), whatever it was configured with."""
    if "FULL_STATE_DICT" in str(plugin.state_dict_type):
        return
    # set_state_dict_type keeps an existing (sharded) config object; clear them so it builds full ones.
    plugin.state_dict_config = None
    plugin.optim_state_dict_config = None
    plugin.set_state_dict_type("FULL_STATE_DICT")


def hub_base_model(model_name: str | None) -> str:
    """The base model's public name (never a local path) for cards and adapter configs."""
    from nli_cot_hub.models import EMBEDDED_ALIASES, EMBEDDED_NAME

    if model_name is None or model_name in EMBEDDED_ALIASES:
        return EMBEDDED_NAME
    return model_name
