"""A fast local batched generation engine: a base model (folder or Hub id) plus an optional PEFT adapter.

Prompts are chat message lists rendered with the tokenizer's chat template, padded on the left with
a pad token distinct from EOS, grouped into batches of similar length (longest first, so an
out-of-memory error shows up at once), and generated greedily unless a temperature is given.
Results come back in input order with token counts.

``mode="padded"`` (default) is ``model.generate`` on padded batches, on a GPU over one preallocated (static)
KV cache that every batch reuses (1.26x the dynamic cache's new tokens/s at 7B on an H100); a run long enough to
pay for it has the decode step of its full batches compiled with CUDA graphs and attention that reads each
key/value head once (:mod:`nli_cot_hub.attention`): 1.16-1.23x the uncompiled rate after a 24-28 s compile
(bench/README.md). ``mode="continuous"`` hands
all prompts to transformers' continuous batching (``generate_batch``, paged attention); without flash-attention
(its fast decode path needs it) a 7B model on an H100 decoded at a fifth of the padded batches' rate (bench/README.md).

``generate(..., json_schema=...)`` constrains every answer to a JSON schema (one for all prompts or
one per prompt) in padded mode, through :mod:`nli_cot_hub.constrained`; continuous mode refuses a schema.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.attention import decode_compile_config, use_packed_gqa
from nli_cot_hub.models import resolve_model

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
MODES = ("padded", "continuous")
# The largest GPU batch: measured on an H100 (bench/README.md); smaller GPUs get what their memory holds.
GPU_BATCH_SIZE = 512
CPU_BATCH_SIZE = 8
# Share of the memory left after the weights that the KV cache may take; the rest is for the prefill's
# activations, the logits and the allocator's fragmentation.
KV_MEMORY_SHARE = 0.7
# Continuous batching on a CPU: the paged KV cache is sized from the prompts themselves (transformers would
# size it from a share of RAM, which comes out negative once the process is large).
CPU_PAGE_SIZE = 64
CPU_MAX_CACHE_BLOCKS = 128
CPU_MAX_BATCH_TOKENS = 2048
# At 7B on an H100 the compile and CUDA-graph capture of the decode step took 24-28 s, after which each full batch
# of 512 prompts x 160 new tokens took 0.85-1.2 s less (bench/README.md): the compile pays from ~20-28 full batches.
COMPILE_MIN_FULL_BATCHES = 24


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # True when the model ended with EOS; False when max_new_tokens cut it off.
    finished: bool
    # True when decoding was constrained to a JSON schema.
    constrained: bool = False


def adapter_base(adapter: str) -> str | None:
    """The base model a PEFT adapter names (``base_model_name_or_path``), from a local folder or a Hub repo
    (``HF_ENDPOINT``/``HF_TOKEN`` as everywhere); None when ``adapter`` is not an adapter."""
    config = _adapter_file(adapter, "adapter_config.json")
    if config is None:
        return None
    return json.loads(Path(config).read_text(encoding="utf-8")).get("base_model_name_or_path")


def base_for_adapter(adapter: str) -> str:
    """The model to load under ``adapter`` when none is given; the embedded model's upstream name maps to the
    embedded copy, as ``nli-cot merge`` does, so adapters trained offline load offline."""
    from nli_cot_hub.models import EMBEDDED, EMBEDDED_NAME

    base = adapter_base(adapter)
    if base is None:
        raise ValueError(
            f"adapter {adapter}: no adapter_config.json naming a base model (not an adapter folder, "
            f"or a Hub repo that HF_ENDPOINT/HF_TOKEN cannot reach); pass --model"
        )
    return EMBEDDED if base == EMBEDDED_NAME else base


def _adapter_file(source: str | None, name: str) -> str | None:
    """The local path of ``name`` in a folder or a Hub model repo, or None when it has none."""
    if not source:
        return None
    folder = Path(source)
    if folder.is_dir():
        return str(folder / name) if (folder / name).exists() else None
    if folder.exists() or not _looks_like_repo_id(source):
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return hf_hub_download(source, name)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return None


def _looks_like_repo_id(name: str) -> bool:
    from nli_cot_hub.models import EMBEDDED_ALIASES

    parts = name.split("/")
    return name not in EMBEDDED_ALIASES and len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def model_and_adapter(model: str | None, adapter: str | None) -> tuple[str, str | None]:
    """What to load: an adapter given as the model loads onto its base; an adapter without a model loads
    onto the base its config names (local folder or Hub repo); no model at all is the embedded one."""
    if adapter is None and model and adapter_base(model):
        return base_for_adapter(model), model
    if adapter is not None and model is None:
        return base_for_adapter(adapter), adapter
    return model or "embedded", adapter


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """KV-cache bytes one token takes: keys and values of every layer's key/value heads."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * heads * head_dim * dtype_bytes


def gpu_batch_size(
    free_bytes: int, model_bytes: int, kv_bytes_per_token: int, tokens_per_sequence: int, cap: int = GPU_BATCH_SIZE
) -> int:
    """Sequences per batch that fit a GPU with ``free_bytes`` free before the model (``model_bytes``) is
    loaded, when each sequence holds ``tokens_per_sequence`` tokens (longest prompt + new tokens) of KV
    cache; at least 1, at most ``cap``."""
    if min(kv_bytes_per_token, tokens_per_sequence) < 1:
        raise ValueError("kv_bytes_per_token and tokens_per_sequence must be positive")
    spare = (free_bytes - model_bytes) * KV_MEMORY_SHARE
    return max(1, min(cap, int(spare // (kv_bytes_per_token * tokens_per_sequence))))


def default_cache(on_gpu: bool) -> str:
    """The KV cache when none is asked for: static on a GPU (1.26x the dynamic cache's new tokens/s at 7B on an
    H100, bench/README.md), dynamic on a CPU, where a static cache attends over its whole preallocated length."""
    return "static" if on_gpu else "dynamic"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
            "float32": torch.float32,
            "fp32": torch.float32,
        }[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None


class LocalEngine:
    """Batched local generation.

    model: a model folder, a Hub id, ``embedded``, or a PEFT adapter (its base is loaded); None: the base
        ``adapter`` names, else the embedded model.
    adapter: a PEFT adapter folder or Hub id applied on top of ``model``; ``merge`` folds it into the
        weights (faster generation, no way back). Its own tokenizer (saved with it by training, carrying
        the chat template training used) is preferred to the base model's.
    batch_size: prompts per batch; None: 8 on a CPU, on a GPU what its free memory holds (up to 512).
    cache: ``static``: one preallocated KV cache, sized by the first (widest) batch and reused by the
        others, its keys and values written in place; ``dynamic``: a cache that grows each step;
        None: static on a GPU, dynamic on a CPU; any other value goes to ``generate``'s ``cache_implementation``.
    compile_decode: compile the decode step of full batches over the static cache (``torch.compile`` with fixed
        shapes, CUDA graphs on a GPU) with :func:`nli_cot_hub.attention.packed_gqa_sdpa` as the SDPA attention; the
        first full batch pays for the compile, smaller batches decode uncompiled. None: on a GPU with the static
        cache in padded mode, for a call of at least ``COMPILE_MIN_FULL_BATCHES`` full batches.
        pad_multiple: pad prompt widths to a multiple.
    share_prefix: compute the tokens every prompt of a call starts with (template, system prompt) once and
        reuse their keys and values in each batch (``nli_cot_hub.shared_prefix``), static cache or not.
    threads: CPU threads for torch (process-wide). On a busy machine 1 thread is often much faster
        than several competing for the same cores.
    """

    def __init__(
        self,
        model: str | None = "embedded",
        adapter: str | None = None,
        *,
        merge: bool | None = None,
        batch_size: int | None = None,
        dtype: str = "auto",
        device: str | None = None,
        mode: str = "padded",
        cache: str | None = None,
        compile_decode: bool | None = None,
        pad_multiple: int | None = None,
        share_prefix: bool = True,
        progress: bool = True,
        threads: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        if mode not in MODES:
            raise ValueError(f"unknown engine mode {mode!r}; choose one of {MODES}")
        if cache is not None:  # transformers' own check of the name, before a model is loaded for nothing
            GenerationConfig(cache_implementation=cache)
        from nli_cot_hub.chat_template import apply_chat_rule

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = device.startswith("cuda")
        # Defaults measured on an H100 (bench/README.md): a merged bf16 model in length-sorted batches of
        # 512 generates ~26x the seed's 4-bit + unmerged-LoRA batches of 16; smaller GPUs get what fits
        # (sized in generate, once the prompt lengths are known). On a CPU small batches win.
        self.auto_batch = batch_size is None and on_gpu
        batch_size = batch_size if batch_size is not None else (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
        merge = on_gpu if merge is None else merge
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        model, adapter = model_and_adapter(model, adapter)
        self.model_name = model
        self.adapter = adapter
        self.batch_size, self.mode, self.progress = batch_size, mode, progress
        self.cache = default_cache(on_gpu) if cache is None else cache
        if compile_decode and (mode != "padded" or self.cache != "static"):
            raise ValueError(
                "compile_decode (--compile-decode) needs the padded engine mode and the static cache (--cache static)"
            )
        may_compile = on_gpu and mode == "padded" and self.cache == "static"
        self.compile_decode = compile_decode if compile_decode is not None or may_compile else False
        self.pad_multiple, self.share_prefix = pad_multiple, share_prefix
        self.device = device
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        tokenizer_source = adapter if _adapter_file(adapter, "tokenizer_config.json") else path
        self.tokenizer = apply_chat_rule(AutoTokenizer.from_pretrained(tokenizer_source))
        self.tokenizer.padding_side = "left"
        self._ensure_pad_token()
        self.free_bytes_before_load = torch.cuda.mem_get_info(torch.device(device))[0] if on_gpu else None
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, self.device))
        if self.compile_decode is not False:
            use_packed_gqa(self.model)  # the same computation as transformers' SDPA when not compiling
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter)
            if merge:
                self.model = self.model.merge_and_unload()
        self.model.to(self.device).eval()
        self.eos_ids = self._eos_ids()
        self._grammars = None

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

    def memory_batch_size(self, longest_prompt: int, max_new_tokens: int, num_samples: int) -> int:
        """Prompts per batch on this GPU: the sequences (prompts x samples) whose KV cache fits."""
        parameters = sum(p.numel() * p.element_size() for p in self.model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in self.model.buffers())
        dtype_bytes = next(self.model.parameters()).element_size()
        sequences = gpu_batch_size(
            self.free_bytes_before_load,
            parameters + buffers,
            kv_bytes_per_token(self.model.config, dtype_bytes),
            longest_prompt + max_new_tokens,
            cap=GPU_BATCH_SIZE * num_samples,
        )
        return max(1, sequences // num_samples)

    # ------------------------------------------------------------ prompts
    def prompt_text(self, messages: Messages) -> str:
        from nli_cot_hub.chat_template import render_prompt

        return render_prompt(self.tokenizer, messages)

    def encode(self, conversations: Sequence[Messages]) -> list[list[int]]:
        """Prompt ids exactly as training tokenized the prompt of each example (same template, same call)."""
        from nli_cot_hub.chat_template import encode_prompts

        return encode_prompts(self.tokenizer, conversations)

    # ------------------------------------------------------------ schemas
    def compiled_schemas(self, json_schema: dict | Sequence[dict | None] | None, count: int) -> list | None:
        """One compiled schema (or None: unconstrained) per conversation, or None when nothing is constrained."""
        if json_schema is None:
            return None
        schemas = [json_schema] * count if isinstance(json_schema, dict) else list(json_schema)
        if len(schemas) != count:
            raise ValueError(f"{len(schemas)} JSON schemas for {count} conversations")
        if all(schema is None for schema in schemas):
            return None
        if self._grammars is None:
            from nli_cot_hub.constrained import Grammars

            vocab = max(len(self.tokenizer), self.model.get_output_embeddings().weight.shape[0])
            self._grammars = Grammars(self.tokenizer, self.eos_ids, vocab)
        return [None if schema is None else self._grammars.compile(schema) for schema in schemas]

    # ------------------------------------------------------------ generation
    def generate(
        self,
        conversations: Sequence[Messages],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        num_samples: int = 1,
        top_p: float = 1.0,
        seed: int | None = None,
        on_batch: Callable[[list[int], list[list[Generation]]], None] | None = None,
        json_schema: dict | Sequence[dict | None] | None = None,
    ) -> list[list[Generation]]:
        """Generate ``num_samples`` answers per conversation; result ``[i][j]`` is sample j of input i.

        ``on_batch(indices, generations)`` is called after each batch (e.g. to stream results to disk).
        Greedy decoding (``temperature == 0``) gives one answer, so ``num_samples > 1`` needs a temperature.
        ``json_schema``: one schema for every answer, or a list with one (or None) per conversation;
        each constrained answer is then valid JSON of its schema that closes within ``max_new_tokens``.
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
        if self.auto_batch and encoded:
            self.batch_size = self.memory_batch_size(max(len(ids) for ids in encoded), max_new_tokens, num_samples)
        schemas = self.compiled_schemas(json_schema, len(conversations))
        if self.mode == "continuous":
            if schemas is not None:
                raise ValueError(
                    "continuous batching cannot constrain answers to a JSON schema; "
                    "use the padded engine mode or turn constraining off"
                )
            return self._generate_continuous(encoded, config, num_samples, on_batch)
        return self._generate_padded(encoded, config, num_samples, on_batch, schemas)

    def _generation_config(self, max_new_tokens: int, temperature: float, num_samples: int, top_p: float):
        from transformers import GenerationConfig

        sampling = temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            num_return_sequences=num_samples,
            temperature=temperature if sampling else None,
            top_p=top_p if sampling else None,
            top_k=None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            cache_implementation=None if self.cache in ("static", "dynamic") else self.cache,
            # generate compiles a static cache's decode step on a GPU unless told not to; the engine decides per
            # batch (:meth:`_compiled`) and passes its own compile config, not generate's (shapes marked dynamic).
            disable_compile=self.cache == "static",
        )

    def compiles(self, prompts: int) -> bool:
        """Whether a call with ``prompts`` prompts compiles the decode step of its full batches."""
        if self.compile_decode is None:
            return prompts >= COMPILE_MIN_FULL_BATCHES * self.batch_size
        return self.compile_decode

    def _compiled(self, config):
        """``config`` with generate's compile of the decode step switched on, in the engine's compile config."""
        compiled = copy.deepcopy(config)
        compiled.disable_compile = False
        compiled.compile_config = decode_compile_config(self.device.startswith("cuda"))
        return compiled

    def _generate_padded(self, encoded, config, num_samples, on_batch, schemas=None) -> list[list[Generation]]:
        import torch
        from tqdm.auto import tqdm
        from transformers import LogitsProcessorList

        from nli_cot_hub.shared_prefix import SharedPrefix

        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        results: list[list[Generation] | None] = [None] * len(encoded)
        # A static cache comes from the prefix helper (holding the prefix's keys and values), not from generate.
        static = self.cache == "static"
        prefix = SharedPrefix(
            self.model, encoded, self.device, self.share_prefix, config.max_new_tokens if static else None
        )
        compiled_config = self._compiled(config) if self.compiles(len(encoded)) else None
        with tqdm(total=len(encoded), desc="generating", unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(order), self.batch_size):
                indices = order[start : start + self.batch_size]
                # generate repeats each row num_samples times; the prefix's cache must have as many rows.
                ids, mask, _, extra = prefix.batch(
                    [encoded[i] for i in indices], self.tokenizer.pad_token_id, self.pad_multiple, num_samples
                )
                batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
                # Only full batches compile (one shape, one graph): a compile of a smaller batch's own shape would
                # cost more than its uncompiled decode.
                full = len(indices) == self.batch_size
                batch_config = compiled_config if compiled_config is not None and full else config
                if schemas is not None:
                    from nli_cot_hub.constrained import SchemaLogitsProcessor

                    # generate repeats each prompt num_samples times in a row.
                    rows = [schemas[i] for i in indices for _ in range(num_samples)]
                    extra["logits_processor"] = LogitsProcessorList(
                        [SchemaLogitsProcessor(rows, config.max_new_tokens)]
                    )
                with torch.inference_mode():
                    output = self.model.generate(**batch, generation_config=batch_config, **extra)
                new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
                generations = []
                for row, index in enumerate(indices):
                    samples = new_tokens[row * num_samples : (row + 1) * num_samples]
                    constrained = schemas is not None and schemas[index] is not None
                    generations.append([self._decoded(tokens, len(encoded[index]), constrained) for tokens in samples])
                for index, generated in zip(indices, generations):
                    results[index] = generated
                if on_batch:
                    on_batch(indices, generations)
                bar.update(len(indices))
        return results  # type: ignore[return-value]

    def _generate_continuous(self, encoded, config, num_samples, on_batch) -> list[list[Generation]]:
        on_gpu = self.device.startswith("cuda")
        attention = self.model.config._attn_implementation
        if on_gpu and (note := slow_continuous_note(attention, flash_attention_installed())):
            log.warning(note)
        # On a GPU transformers sizes the paged KV cache from free memory and warms up CUDA graphs.
        batching = None if on_gpu else cpu_cache_config(encoded, config.max_new_tokens, num_samples)
        outputs = self.model.generate_batch(
            inputs=encoded,
            generation_config=config,
            progress_bar=self.progress,
            continuous_batching_config=batching,
            warmup=on_gpu,
        )
        # generate_batch returns requests in input order, each parent's sampled children first. It reports a
        # failure of its generation loop per request (or drops the requests), never by raising.
        flat = list(outputs.values())
        failed = [output.error for output in flat if getattr(output, "error", None)]
        if failed or len(flat) != len(encoded) * num_samples:
            reason = failed[0] if failed else f"{len(flat)} answers for {len(encoded) * num_samples} requests"
            raise RuntimeError(f"continuous batching failed: {reason}")
        results = []
        for index, ids in enumerate(encoded):
            samples = flat[index * num_samples : (index + 1) * num_samples]
            results.append([self._decoded(list(out.generated_tokens), len(ids)) for out in samples])
        if on_batch:
            on_batch(list(range(len(encoded))), results)
        return results

    def _decoded(self, tokens: list[int], prompt_tokens: int, constrained: bool = False) -> Generation:
        finished = False
        for position, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens, finished = tokens[: position + 1], True
                break
        pad = self.tokenizer.pad_token_id
        counted = [token for token in tokens if token != pad]
        text = self.tokenizer.decode(counted, skip_special_tokens=True)
        return Generation(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(counted),
            finished=finished,
            constrained=constrained,
        )


def flash_attention_installed() -> bool:
    """The check transformers' continuous batching makes before it switches to flash-attention."""
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    return is_flash_attn_3_available(kernels_fallback_ok=True) or is_flash_attn_2_available(kernels_fallback_ok=True)


def slow_continuous_note(attention: str, flash_installed: bool) -> str | None:
    """A warning when continuous batching on a GPU will take its slow path: its fast decode path (paged
    ``flash_attn_with_kvcache``) exists only with flash-attention, which transformers switches to when installed."""
    if attention.startswith("flash") or flash_installed:
        return None
    return (
        "continuous batching without flash-attention reads the paged cache through SDPA: a 7B model on an H100 "
        "decoded at a fifth of the padded mode's rate; install flash-attn or use --engine-mode padded"
    )


def cpu_cache_config(encoded: Sequence[Sequence[int]], max_new_tokens: int, num_samples: int = 1):
    """A paged-cache size for continuous batching on a CPU: enough blocks for every request at full length
    (up to a cap; past it requests wait their turn) and a prefill chunk no larger than the prompts."""
    from math import ceil

    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    blocks = sum(ceil((len(ids) + max_new_tokens) / CPU_PAGE_SIZE) for ids in encoded) * num_samples
    longest = max((len(ids) for ids in encoded), default=1)
    batch_tokens = max(longest, min(CPU_MAX_BATCH_TOKENS, sum(len(ids) for ids in encoded)))
    return ContinuousBatchingConfig(
        page_size=CPU_PAGE_SIZE,
        num_blocks=max(1, min(blocks, CPU_MAX_CACHE_BLOCKS)),
        max_batch_tokens=batch_tokens,
        max_memory_percent=0.5,
    )
