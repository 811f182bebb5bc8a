"""A fast local batched generation engine: a base model (folder or Hub id) plus an optional PEFT adapter.

Prompts are chat message lists rendered with the tokenizer's chat template, padded on the left with
a pad token distinct from EOS, grouped into batches of similar length (longest first, so an
out-of-memory error shows up at once), and generated greedily unless a temperature is given.
Results come back in input order with token counts.

``mode="padded"`` (default) is ``model.generate`` on padded batches; ``cache="static"`` asks it for a
static KV cache (GPU, with ``torch.compile``). ``mode="continuous"`` hands all prompts to
transformers' continuous batching (``generate_batch``, paged attention), the faster choice on a GPU
for many prompts of mixed lengths.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.models import resolve_model

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
MODES = ("padded", "continuous")
GPU_BATCH_SIZE = 512
CPU_BATCH_SIZE = 8
# Continuous batching on a CPU: the paged KV cache is sized from the prompts themselves (transformers would
# size it from a share of RAM, which comes out negative once the process is large).
CPU_PAGE_SIZE = 64
CPU_MAX_CACHE_BLOCKS = 128
CPU_MAX_BATCH_TOKENS = 2048


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # True when the model ended with EOS; False when max_new_tokens cut it off.
    finished: bool


def adapter_base(adapter: str) -> str | None:
    """The base model named in a local PEFT adapter folder, if it is one."""
    config = Path(adapter) / "adapter_config.json"
    if not config.exists():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None


class LocalEngine:
    """Batched local generation.

    model: a model folder, a Hub id, ``embedded``, or a PEFT adapter folder (its base is loaded).
    adapter: a PEFT adapter folder or Hub id applied on top of ``model``; ``merge`` folds it into the
        weights (faster generation, no way back).
    cache: ``generate``'s ``cache_implementation`` (e.g. ``static``); pad_multiple: pad prompt widths
        to a multiple, so a static cache / compiled graph sees few distinct shapes.
    threads: CPU threads for torch (process-wide). On a busy machine 1 thread is often much faster
        than several competing for the same cores.
    """

    def __init__(self, model: str | None = "embedded", adapter: str | None = None, *, merge: bool | None = None,
                 batch_size: int | None = None, dtype: str = "auto", device: str | None = None, mode: str = "padded",
                 cache: str | None = None, pad_multiple: int | None = None, progress: bool = True,
                 threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if mode not in MODES:
            raise ValueError(f"unknown engine mode {mode!r}; choose one of {MODES}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = device.startswith("cuda")
        # Defaults measured on an H100 (bench/README.md): a merged bf16 model in length-sorted batches of
        # 512 generates ~26x the seed's 4-bit + unmerged-LoRA batches of 16. On a CPU small batches win.
        batch_size = batch_size if batch_size is not None else (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
        merge = on_gpu if merge is None else merge
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if adapter is None and model and adapter_base(model):
            model, adapter = adapter_base(model), model
        self.model_name = model or "embedded"
        self.adapter = adapter
        self.batch_size, self.mode, self.cache, self.progress = batch_size, mode, cache, progress
        self.pad_multiple = pad_multiple
        self.device = device
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(adapter if _has_tokenizer(adapter) else path)
        self.tokenizer.padding_side = "left"
        self._ensure_pad_token()
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, self.device))
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter)
            if merge:
                self.model = self.model.merge_and_unload()
        self.model.to(self.device).eval()
        self.eos_ids = self._eos_ids()

    # ------------------------------------------------------------ setup
    def _ensure_pad_token(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id:
            return
        # Padding with EOS is harmless here only because of the attention mask, but a distinct pad
        # keeps the decoded text free of false end markers; unk is the usual spare token.
        if tok.unk_token is not None and tok.unk_token_id != tok.eos_token_id:
            tok.pad_token = tok.unk_token
        elif tok.pad_token is None:
            tok.pad_token = tok.eos_token
            log.warning("%s has no pad or unk token; padding with EOS", self.model_name)

    def _eos_ids(self) -> list[int]:
        ids = set()
        configured = self.model.generation_config.eos_token_id
        if configured is not None:
            ids.update(configured if isinstance(configured, list) else [configured])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        ids.discard(self.tokenizer.pad_token_id)
        return sorted(ids)

    # ------------------------------------------------------------ prompts
    def prompt_text(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, conversations: Sequence[Messages]) -> list[list[int]]:
        texts = [self.prompt_text(messages) for messages in conversations]
        # The chat template already wrote any BOS the model expects.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------ generation
    def generate(self, conversations: Sequence[Messages], max_new_tokens: int = 256, temperature: float = 0.0,
                 num_samples: int = 1, top_p: float = 1.0, seed: int | None = None,
                 on_batch: Callable[[list[int], list[list[Generation]]], None] | None = None,
                 ) -> list[list[Generation]]:
        """Generate ``num_samples`` answers per conversation; result ``[i][j]`` is sample j of input i.

        ``on_batch(indices, generations)`` is called after each batch (e.g. to stream results to disk).
        Greedy decoding (``temperature == 0``) gives one answer, so ``num_samples > 1`` needs a temperature.
        """
        import torch

        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        if num_samples > 1 and temperature <= 0:
            raise ValueError("several samples need sampling: pass a temperature > 0 (e.g. 0.7)")
        if seed is not None:
            torch.manual_seed(seed)
        encoded = self.encode(conversations)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            longest = max((len(ids) for ids in encoded), default=0)
            max_new_tokens = max(1, min(max_new_tokens, limit - longest))
        config = self._generation_config(max_new_tokens, temperature, num_samples, top_p)
        if self.mode == "continuous":
            return self._generate_continuous(encoded, config, num_samples, on_batch)
        return self._generate_padded(encoded, config, num_samples, on_batch)

    def _generation_config(self, max_new_tokens: int, temperature: float, num_samples: int, top_p: float):
        from transformers import GenerationConfig

        sampling = temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampling, num_return_sequences=num_samples,
            temperature=temperature if sampling else None, top_p=top_p if sampling else None, top_k=None,
            eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
            cache_implementation=self.cache,
        )

    def _generate_padded(self, encoded, config, num_samples, on_batch) -> list[list[Generation]]:
        import torch
        from tqdm.auto import tqdm

        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        results: list[list[Generation] | None] = [None] * len(encoded)
        with tqdm(total=len(encoded), desc="generating", unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(order), self.batch_size):
                indices = order[start:start + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in indices]}, return_tensors="pt",
                                           pad_to_multiple_of=self.pad_multiple)
                batch = {key: value.to(self.device) for key, value in batch.items()}
                with torch.inference_mode():
                    output = self.model.generate(**batch, generation_config=config)
                new_tokens = output[:, batch["input_ids"].shape[1]:].tolist()
                generations = []
                for row, index in enumerate(indices):
                    samples = new_tokens[row * num_samples:(row + 1) * num_samples]
                    generations.append([self._decoded(tokens, len(encoded[index])) for tokens in samples])
                for index, generated in zip(indices, generations):
                    results[index] = generated
                if on_batch:
                    on_batch(indices, generations)
                bar.update(len(indices))
        return results  # type: ignore[return-value]

    def _generate_continuous(self, encoded, config, num_samples, on_batch) -> list[list[Generation]]:
        on_gpu = self.device.startswith("cuda")
        # On a GPU transformers sizes the paged KV cache from free memory and warms up CUDA graphs.
        batching = None if on_gpu else cpu_cache_config(encoded, config.max_new_tokens, num_samples)
        outputs = self.model.generate_batch(inputs=encoded, generation_config=config, progress_bar=self.progress,
                                            continuous_batching_config=batching, warmup=on_gpu)
        # generate_batch returns requests in input order, each parent's sampled children first. It reports a
        # failure of its generation loop per request (or drops the requests), never by raising.
        flat = list(outputs.values())
        failed = [output.error for output in flat if getattr(output, "error", None)]
        if failed or len(flat) != len(encoded) * num_samples:
            reason = failed[0] if failed else f"{len(flat)} answers for {len(encoded) * num_samples} requests"
            raise RuntimeError(f"continuous batching failed: {reason}")
        results = []
        for index, ids in enumerate(encoded):
            samples = flat[index * num_samples:(index + 1) * num_samples]
            results.append([self._decoded(list(out.generated_tokens), len(ids)) for out in samples])
        if on_batch:
            on_batch(list(range(len(encoded))), results)
        return results

    def _decoded(self, tokens: list[int], prompt_tokens: int) -> Generation:
        finished = False
        for position, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens, finished = tokens[:position + 1], True
                break
        pad = self.tokenizer.pad_token_id
        counted = [token for token in tokens if token != pad]
        text = self.tokenizer.decode(counted, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=prompt_tokens, completion_tokens=len(counted),
                          finished=finished)


def cpu_cache_config(encoded: Sequence[Sequence[int]], max_new_tokens: int, num_samples: int = 1):
    """A paged-cache size for continuous batching on a CPU: enough blocks for every request at full length
    (up to a cap; past it requests wait their turn) and a prefill chunk no larger than the prompts."""
    from math import ceil

    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    blocks = sum(ceil((len(ids) + max_new_tokens) / CPU_PAGE_SIZE) for ids in encoded) * num_samples
    longest = max((len(ids) for ids in encoded), default=1)
    batch_tokens = max(longest, min(CPU_MAX_BATCH_TOKENS, sum(len(ids) for ids in encoded)))
    return ContinuousBatchingConfig(page_size=CPU_PAGE_SIZE, num_blocks=max(1, min(blocks, CPU_MAX_CACHE_BLOCKS)),
                                    max_batch_tokens=batch_tokens, max_memory_percent=0.5)


def _has_tokenizer(folder: str | None) -> bool:
    return bool(folder) and any((Path(folder) / name).exists()
                                for name in ("tokenizer.json", "tokenizer_config.json"))
