"""Shared pieces of the GPU benchmarks: a random-weight Mistral-7B-v0.3, synthetic CoT-length data,
and the environment record written next to every result.

The benchmarks download nothing, and speed does not depend on the values of the weights, so they build the
real architecture with random weights once (saved under ``$BENCH_CACHE``, default /tmp/bench-cache) and draw
token ids at random with the (prompt, completion) lengths measured on real records by ``bench/cot_lengths.py``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
LENGTHS_FILE = BENCH_DIR / "results" / "cot_lengths_mistral_v3.json"
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/bench-cache"))
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


TINY = os.environ.get("BENCH_TINY") == "1"  # CPU smoke test of the scripts with a 2-layer model
DEVICE = "cpu" if TINY else "cuda"


def at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def names_from(known):
    """An argparse type: a comma-separated list of names, each one of ``known``."""

    def parse(text: str) -> list[str]:
        chosen = [name for name in text.split(",") if name]
        unknown = [name for name in chosen if name not in known]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}"
            )
        return chosen

    return parse


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# The widths and depth that cut Mistral-7B-v0.3 down to a model a CPU runs in seconds (also tests/tiny_mistral.py).
TINY_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def tiny_mistral_config(**overrides):
    """Mistral-7B-v0.3's configuration (layer types, vocabulary, token ids) at 2 layers of width 64: for checks
    of the scripts on a CPU."""
    from transformers import CONFIG_MAPPING

    from nli_cot_hub.train.model import KNOWN_CONFIGS

    values = {**KNOWN_CONFIGS["mistralai/Mistral-7B-v0.3"], **TINY_SIZES, "pad_token_id": 0, **overrides}
    return CONFIG_MAPPING[values.pop("model_type")](**values)


def mistral_7b_v03_config():
    if TINY:
        return tiny_mistral_config()
    from nli_cot_hub.train.model import model_config

    # Mistral-7B-v0.3's published shape (32 layers, d=4096, GQA 32/8 heads, SwiGLU 14336, vocab 32768), known
    # to training without a download; pad 0 as the benchmarks' batches use it.
    config = model_config("mistralai/Mistral-7B-v0.3")
    config.pad_token_id = 0
    return config


def random_mistral_dir() -> Path:
    """A saved random-weight Mistral-7B-v0.3 (bf16), built on the GPU the first time."""
    from transformers import MistralForCausalLM

    target = CACHE / ("tiny-mistral-random" if TINY else "mistral-7b-v0.3-random")
    if (target / "config.json").exists():
        return target
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = MistralForCausalLM(mistral_7b_v03_config()).to(torch.bfloat16)
    model.save_pretrained(target)
    print(f"built and saved random Mistral-7B-v0.3 in {time.perf_counter() - started:.0f}s", flush=True)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return target


def stub_tokenizer():
    """A tokenizer carrying only Mistral's special ids; the data are token ids already."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
    )


def measured_length_pairs() -> list[tuple[int, int]]:
    return [tuple(pair) for pair in json.loads(LENGTHS_FILE.read_text())["pairs"]]


def synthetic_examples(count: int, seed: int = 0, vocab: int = 32768) -> list[dict]:
    """``count`` examples whose (prompt, completion) lengths are drawn from the measured records."""
    rng = random.Random(seed)
    pairs = measured_length_pairs()
    examples = []
    for _ in range(count):
        prompt_len, completion_len = rng.choice(pairs)
        ids = [1] + [rng.randrange(3, vocab) for _ in range(prompt_len + completion_len - 2)] + [2]
        examples.append({"input_ids": ids, "completion_mask": [0] * prompt_len + [1] * completion_len})
    return examples


def environment() -> dict:
    import transformers

    info = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("peft", "trl", "bitsandbytes", "liger-kernel"):
        try:  # the distribution's version: liger_kernel has no __version__
            info[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name.replace("-", "_")] = None
    return info


def write_result(name: str, payload: dict) -> Path:
    out_dir = Path(os.environ.get("OUT", BENCH_DIR / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2))
    return path
