"""CoT prediction throughput on one GPU: the seed's evaluation path against faster local engines.

All runs use the random-weight Mistral-7B-v0.3, prompts whose lengths follow the real fine-tuning
prompts (bench/results/cot_lengths_mistral_v3.json) and exactly 160 new tokens each (EOS is
switched off, since random weights would stop at arbitrary places), greedy decoding.

    python -m bench.predict_throughput [--engines seed_like,bf16_b256,...] [--prompts 1024]

Predictions written before the run (bench/README.md keeps them with the outcomes):
  seed_like      NF4 + unmerged LoRA, HF generate, batch 16: ~100-150 new tok/s (dequantising 4-bit
                 weights and the LoRA side path on every decode step, tiny batch).
  bf16_b256      merged bf16, length-sorted, batch 256, dynamic cache: ~2,400 (the estimate made beforehand).
  bf16_b512_shared  batch 512 with the 59 shared prompt tokens computed once (the local engine's default now):
                 prefill is ~30% of a batch (~1.2 PFLOP of 85k padded positions), 59 of each row's ~166
                 padded positions are shared, so ~1.1x over bf16_b512.
  static_b256    + static KV cache, which generate compiles on CUDA: no cache re-allocation and fused
                 decode kernels, ~3x over dynamic, if the compile is warmed at the timed shape.
  static_b512    twice the rows per weight read; KV reads begin to dominate: ~1.3x over b256.
  static_b512_cudagraphs  the same graphs of the traced decode step without inductor's code generation (dynamo's
                 `cudagraphs` backend): a far shorter warm-up; removes launch overhead but fuses nothing, ~1.2x.
  bf16_b1024     batch 1,024 on a 141 GB card: measured once at 8,789 against 9,400-9,900 at b512 (a decode
                 step is cache copies and launches, not weight reads): expected no faster than b512.
  static_b1024   the static cache removes the per-step cache copies that slowed b1024: ~1.3x over bf16_b512,
                 if the compiled graphs fit the card.
  continuous_b512  paged cache, requests scheduled token by token, CUDA graphs of the decode step where
                 transformers chooses them, no compile: no padded cache to copy, ~1.3x over bf16_b512.
  continuous_b512_compile  the same compiled (level 1); if it no longer recompiles per layer: ~1.5x.
  static_b512_shared  static_b512's compiled decode step over a static cache that holds the shared prefix
                 (nli_cot_hub.shared_prefix), one cache refilled for every batch; the prompts' own widths unbucketed
                 (the longest batch sizes the cache): static_b512's gain times ~1.08.
  bf16_b512_shared_nocudnn  the same without SDPA's cuDNN backend (memory-efficient kernel instead): decode attention
                 is roughly a quarter of a step's kernel time in the H100 profile, and the packed 4-query-row
                 shape suits neither kernel well: 0.95-1.05x over bf16_b512_shared.
  bf16_b512_shared_liger  the same with Liger's fused RMSNorm, SwiGLU and rotary kernels (the training recipe's, here
                 in the forward pass only): multiplies and additions are ~16% of the profiled kernel time (prefill
                 and decode, 2026-12-07) and these fuse about half of them: ~1.05x over bf16_b512_shared.
                 Run it last: its rotary patch is module-wide.
Added after those ran (the compiled static cache had measured at half the dynamic cache's rate), no prediction
written first:
  static_b512_shared_eager  static_b512_shared without the compile generate applies to a static cache on CUDA
                 (`disable_compile=True`); the profile's uncompiled static decode step took 44.5 ms against 47.1.
  static_b512_shared_liger_eager  the same with Liger's kernels.
Written after the uncompiled static cache (13,610) and generate's compile of it (5,778), run on 2026-12-07 (outcomes
in bench/README.md). A trace on the CPU (now tests/test_attention.py) showed why the compiled step is slow:
transformers' SDPA path folds a one-token query's heads onto the key/value heads only when not compiling; traced, it
repeats keys and values to all 32 query heads, i.e. writes the whole static cache 4 times over in every layer of
every step (~2.4 GB a layer at batch 512, ~75 GB a step).
The same trace showed one graph and no recompile across three batch widths, so shapes are not the cause.
  static_b512_shared_compiled_packed  generate's compile (CUDA graphs, `dynamic=False`) with `packed_gqa_sdpa`, which
                     folds the heads compiled or not: no repeat, CUDA graphs remove the ~15% of a step the GPU waits
                     for launches, inductor fuses the elementwise work Liger's kernels fused (1.13-1.16x): ~1.3x the
                     uncompiled static rate, ~17,000 new tok/s on an H100.
  static_b512_shared_compiled_packed_nographs  the same without CUDA graphs (mode `default`): fusion alone, ~1.1x.
  static_b512_shared_packed_eager  the packed attention uncompiled: the same path as transformers' eager one, 1.00x
                     (a check that the attention function itself costs nothing). Measured 0.87x; the function
                     now hands uncompiled calls to transformers' own, so this engine is static_b512_shared_eager.
  static_b512_shared_compiled_fixed  transformers' SDPA compiled with `dynamic=False` instead of generate's
                     `dynamic=None`: still ~0.5x, since the repeat, not the shapes, is the cost.
  static_b512_shared_compiled_nographs  transformers' SDPA, inductor without CUDA graphs: below 1x, same reason.
  static_b768_shared_eager  1.5x the rows over the same weight reads; a b512 decode step's matmuls already run
                     near the compute bound (M=512), so ~1.05x, at ~55 GiB.
Written after static_b512_shared_compiled_packed measured 15,511 against 12,650 uncompiled (1.23x, H100, 2026-12-07),
run on 2026-12-07 (outcomes in bench/README.md):
  static_b768_shared_compiled_packed  with the decode step no longer launch-bound, 1.5x the rows per weight read
                     (a b512 step took ~33 ms where weights, cache and FLOPs bound it at ~15-20 ms): ~1.1x b512's
                     compiled rate, at ~55 GiB; its 768 + 256 rows compile two graphs.
  static_b1024_shared_compiled_packed  the same at 1,024 rows: ~1.15x b512's compiled rate if cache and graphs fit
                     (~68 GiB on 80 GB); with 1,024 prompts a single timed batch.
  logprob_b512   the log-probability read-out of an answer-first format (nli_cot_hub.readout.score_labels):
                 one forward pass over prompt + answer prefix, no decoding. Prefill is compute-bound at 7B:
                 ~115 tokens x 14.5 GFLOP each per example -> ~200-300 examples/s, ~4x CoT generation at b512
                 (~60 examples/s), not the ~50x it gives on the 135M model, whose decoding is launch-bound.
                 (Measured on 2026-12-06 with batches in input order: 161; rows are now sorted as shipped.)
                 It now computes the tokens every prompt shares once (SHARED_PREFIX below): 169,984 padded
                 positions for the 1,024 sorted prompts become 109,568, so ~1.5x over logprob_b512_unshared.
  logprob_b512_unshared  the same with share_prefix=False, each row computed whole: ~200 examples/s.

With BENCH_TINY=1 the script runs on the CPU with a 2-layer model (a check of the script, not a measurement).
Every timed batch's new tokens/s is kept, so the result gives the median and the slowest and fastest batch
beside the overall rate; the exact command is in the result file.
"""

from __future__ import annotations

import argparse
import gc
import random
import shlex
import statistics
import sys
import time

import torch

from bench.common import (
    DEVICE,
    LORA_TARGETS,
    at_least,
    measured_length_pairs,
    names_from,
    random_mistral_dir,
    sync,
    write_result,
)

NEW_TOKENS = 160
DEV_ROWS = 6737  # the coursework dev set


# Every project prompt under Mistral-7B-v0.3's template starts with the same 59 tokens (BOS, [INST], the system
# text), counted with bench/cot_lengths.py's tokenizer; the synthetic prompts share as many.
SHARED_PREFIX = 59


def synthetic_prompts(count: int, seed: int = 2) -> list[list[int]]:
    rng = random.Random(seed)
    pairs = measured_length_pairs()
    shared = [1] + [rng.randrange(3, 32768) for _ in range(SHARED_PREFIX - 1)]
    return [
        shared + [rng.randrange(3, 32768) for _ in range(max(rng.choice(pairs)[0] - SHARED_PREFIX, 1))]
        for _ in range(count)
    ]


def left_pad(batch: list[list[int]], buckets: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(ids) for ids in batch)
    # A static cache compiles one graph per shape: a few fixed widths keep the shapes few.
    width = min((b for b in buckets if b >= longest), default=longest)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, prompt in enumerate(batch):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids.to(DEVICE), mask.to(DEVICE)


def run_generate(
    model,
    prompts,
    batch_size: int,
    sort: bool,
    buckets: tuple[int, ...] = (),
    share_prefix: bool = False,
    static_shared: bool = False,
    cudagraphs_only: bool = False,
    cudnn_attention: bool = True,
    compile_mode: str | None = None,
    **kwargs,
) -> dict:
    from transformers import CompileConfig

    from nli_cot_hub.attention import decode_compile_config
    from nli_cot_hub.shared_prefix import SharedPrefix

    if cudagraphs_only:  # the static cache's decode step captured in CUDA graphs as traced, without inductor's kernels
        graphs_only = CompileConfig(backend="cudagraphs", mode="default")
        kwargs.update(cache_implementation="static", compile_config=graphs_only)
    if compile_mode:  # the local engine's compile of the static decode step (fixed shapes), in this inductor mode
        compile_config = decode_compile_config(on_accelerator=DEVICE == "cuda")
        compile_config.mode = compile_mode
        kwargs.update(compile_config=compile_config)

    # Longest first, as the local engine orders them. With a static cache this matters: generate sizes each new cache
    # to the longest seen so far, so the first batch fixes one cache length (one CUDA graph) for all; shortest first,
    # every wider batch brought a new length and graph beside the old ones (out of memory at b512 on 80 GB).
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i])) if sort else list(range(len(prompts)))
    batches = [[prompts[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    # As the local engine does: the tokens all prompts start with computed once, their cache copied per batch.
    prefix = SharedPrefix(model, prompts, DEVICE, share_prefix, NEW_TOKENS if static_shared else None)

    def generate(batch):
        if prefix.length or static_shared:
            ids, mask, _, cache = prefix.batch(batch, 0)
            ids, mask = ids.to(DEVICE), mask.to(DEVICE)
        else:
            (ids, mask), cache = left_pad(batch, buckets), {}
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            **cache,
            **kwargs,
        )
        return (out.shape[1] - ids.shape[1]) * out.shape[0]

    # Without SDPA's cuDNN backend, masked attention takes the memory-efficient kernel (decoding: 4 query heads
    # per key/value head as 4 query rows, transformers' packed GQA).
    torch.backends.cuda.enable_cudnn_sdp(cudnn_attention)
    try:
        return timed_batches(generate, batches, buckets)
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)


def timed_batches(generate, batches, buckets) -> dict:
    """New tokens per second over ``batches``, each shape generated once untimed first."""
    # Warm-up at every timed shape: the first call of a compiled static-cache path at a shape pays for it.
    warmed = set()
    started = time.perf_counter()
    for batch in batches:
        shape = (len(batch), left_pad(batch, buckets)[0].shape[1])
        if shape not in warmed:
            warmed.add(shape)
            generate(batch)
    sync()
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    new_tokens, batch_rates = 0, []
    for batch in batches:
        batch_started = time.perf_counter()
        batch_tokens = generate(batch)
        sync()
        batch_rates.append(batch_tokens / (time.perf_counter() - batch_started))
        new_tokens += batch_tokens
    result = summarise(new_tokens, sum(map(len, batches)), time.perf_counter() - started, batch_rates)
    # one untimed batch per shape: for a compiled engine, mostly the compile and the CUDA graph capture
    return {**result, "warmup_seconds": round(warmup_seconds, 1), "warmup_shapes": len(warmed)}


def summarise(new_tokens: int, examples: int, seconds: float, batch_rates: list[float] = ()) -> dict:
    per_s = new_tokens / seconds
    result = {
        "examples": examples,
        "new_tokens": new_tokens,
        "seconds": round(seconds, 1),
        "new_tokens_per_s": round(per_s),
        "examples_per_s": round(examples / seconds, 2),
        "minutes_for_dev_set": round(DEV_ROWS * NEW_TOKENS / per_s / 60, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None,
    }
    if batch_rates:
        result["batch_new_tokens_per_s_median"] = round(statistics.median(batch_rates))
        result["batch_new_tokens_per_s_min_max"] = [round(min(batch_rates)), round(max(batch_rates))]
    return result


def load_bf16(model_dir, liger: bool = False, packed_gqa: bool = False):
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.attention import register_packed_gqa

    attention = register_packed_gqa() if packed_gqa else "sdpa"  # the local engine's attention when compiling
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16, device_map={"": DEVICE}, attn_implementation=attention
    )
    if liger:  # fused RMSNorm, SwiGLU and rotary kernels; the rotary patch is module-wide, so this engine runs last
        from liger_kernel.transformers import apply_liger_kernel_to_mistral

        apply_liger_kernel_to_mistral(
            rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model
        )
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def load_seed_like(model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": 0}
    )
    # init_lora_weights=False: non-zero B, so the unmerged adapter path does real work as a trained one would.
    lora = LoraConfig(r=32, lora_alpha=64, target_modules=LORA_TARGETS, task_type="CAUSAL_LM", init_lora_weights=False)
    model = get_peft_model(model, lora)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def run_continuous(model, prompts, max_batch: int, compile_level: int = 0) -> dict:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    # Level 0 is what the local engine's continuous mode uses on a GPU (nli_cot_hub/local_engine.py): forward
    # uncompiled, CUDA graphs of the paged decode step where transformers chooses them; here requests are capped
    # at 512 a batch to compare with bf16_b512. Level 1 compiles it (dynamic shapes); it once recompiled per layer.
    batching = ContinuousBatchingConfig(max_requests_per_batch=max_batch, default_compile_level=compile_level)
    model.generate_batch(prompts[:max_batch], generation_config=config, continuous_batching_config=batching)
    sync()
    started = time.perf_counter()
    outputs = model.generate_batch(prompts, generation_config=config, continuous_batching_config=batching)
    sync()
    new_tokens = sum(len(output.generated_tokens) for output in outputs.values())
    return summarise(new_tokens, len(prompts), time.perf_counter() - started)


def run_readout(model, prompts, batch_size: int, share_prefix: bool = True) -> dict:
    """Examples/s of the shipped log-probability read-out: each prompt plus a few answer-prefix tokens, the two
    label tokens' log-probabilities at the end."""
    from types import SimpleNamespace

    from nli_cot_hub.readout import score_labels

    answer_prefix = [29477, 29485, 29515, 29473, 29508, 29491]  # stands in for '{"predicted_label": ' and the like
    # Longest first, as score_labels orders all the rows `nli-cot predict` hands it; chunked here to time each batch.
    splits = sorted(((prompt + answer_prefix, 29502, 29508) for prompt in prompts), key=lambda split: -len(split[0]))
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=2)
    score_labels(model, tokenizer, splits[:batch_size], batch_size, DEVICE, share_prefix)  # warm-up, widest shape
    sync()
    started = time.perf_counter()
    batch_rates = []
    for start in range(0, len(splits), batch_size):
        batch_started = time.perf_counter()
        chunk = splits[start : start + batch_size]
        score_labels(model, tokenizer, chunk, batch_size, DEVICE, share_prefix)
        sync()
        batch_rates.append(len(chunk) / (time.perf_counter() - batch_started))
    seconds = time.perf_counter() - started
    return {
        "examples": len(prompts),
        "seconds": round(seconds, 2),
        "examples_per_s": round(len(prompts) / seconds, 2),
        "minutes_for_dev_set": round(DEV_ROWS / (len(prompts) / seconds) / 60, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None,
        "batch_examples_per_s_median": round(statistics.median(batch_rates), 1),
        "batch_examples_per_s_min_max": [round(min(batch_rates), 1), round(max(batch_rates), 1)],
    }


def static_shared(kind: str = "bf16", batch: int = 512, **options) -> tuple[str, dict]:
    """An engine of length-sorted batches over one static cache holding the shared prefix."""
    return kind, dict(batch_size=batch, sort=True, share_prefix=True, static_shared=True, **options)


ENGINES = {
    "seed_like": ("seed", dict(batch_size=16, sort=False)),
    "bf16_b256": ("bf16", dict(batch_size=256, sort=True)),
    "bf16_b512": ("bf16", dict(batch_size=512, sort=True)),
    "bf16_b512_shared": ("bf16", dict(batch_size=512, sort=True, share_prefix=True)),
    "static_b256": ("bf16", dict(batch_size=256, sort=True, buckets=(128, 384), cache_implementation="static")),
    "static_b512": ("bf16", dict(batch_size=512, sort=True, buckets=(128, 384), cache_implementation="static")),
    "static_b512_cudagraphs": ("bf16", dict(batch_size=512, sort=True, buckets=(128, 384), cudagraphs_only=True)),
    "bf16_b1024": ("bf16", dict(batch_size=1024, sort=True)),
    "static_b1024": ("bf16", dict(batch_size=1024, sort=True, buckets=(128, 384), cache_implementation="static")),
    "continuous_b512": ("bf16", dict(continuous=512)),
    "continuous_b512_compile": ("bf16", dict(continuous=512, compile_level=1)),
    "static_b512_shared": static_shared(),
    "bf16_b512_shared_nocudnn": ("bf16", dict(batch_size=512, sort=True, share_prefix=True, cudnn_attention=False)),
    "static_b512_shared_eager": static_shared(disable_compile=True),
    "static_b512_shared_compiled_fixed": static_shared(compile_mode="reduce-overhead"),
    "static_b512_shared_compiled_nographs": static_shared(compile_mode="default"),
    "static_b512_shared_compiled_packed": static_shared("bf16_packed_gqa", compile_mode="reduce-overhead"),
    "static_b512_shared_compiled_packed_nographs": static_shared("bf16_packed_gqa", compile_mode="default"),
    "static_b512_shared_packed_eager": static_shared("bf16_packed_gqa", disable_compile=True),
    "static_b768_shared_compiled_packed": static_shared("bf16_packed_gqa", 768, compile_mode="reduce-overhead"),
    "static_b1024_shared_compiled_packed": static_shared("bf16_packed_gqa", 1024, compile_mode="reduce-overhead"),
    "static_b768_shared_eager": static_shared(batch=768, disable_compile=True),
    "bf16_b512_shared_liger": ("bf16_liger", dict(batch_size=512, sort=True, share_prefix=True)),
    "static_b512_shared_liger_eager": static_shared("bf16_liger", disable_compile=True),
    "logprob_b512": ("bf16", dict(readout=512)),
    "logprob_b512_unshared": ("bf16", dict(readout=512, share_prefix=False)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description="CoT prediction throughput (GPU).")
    parser.add_argument("--engines", type=names_from(ENGINES), default=list(ENGINES))
    parser.add_argument("--prompts", type=at_least(1), default=1024)
    parser.add_argument("--seed-prompts", type=at_least(1), default=64, help="prompts for the slow seed-like path")
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    args = parser.parse_args()
    command = shlex.join(["python", "-m", "bench.predict_throughput", *sys.argv[1:]])
    model_dir = random_mistral_dir()
    prompts = synthetic_prompts(args.prompts)
    results, loaded, model = {}, None, None
    for name in args.engines:
        kind, options = ENGINES[name]
        if kind != loaded:
            del model
            gc.collect()
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
            if kind == "seed":
                model = load_seed_like(model_dir)
            else:
                model = load_bf16(model_dir, liger=kind == "bf16_liger", packed_gqa=kind == "bf16_packed_gqa")
            loaded = kind
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        print(f"=== {name}", flush=True)
        torch._dynamo.utils.counters.clear()
        try:
            if "readout" in options:
                results[name] = run_readout(model, prompts, options["readout"], options.get("share_prefix", True))
            elif "continuous" in options:
                results[name] = run_continuous(model, prompts, options["continuous"], options.get("compile_level", 0))
            else:
                subset = prompts[: args.seed_prompts] if kind == "seed" else prompts
                results[name] = run_generate(model, subset, **options)
        except Exception as error:  # one failing engine must not cost the others' numbers
            results[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        results[name]["options"] = dict(options)
        compiled = {key: dict(value) for key, value in torch._dynamo.utils.counters.items() if value}
        if compiled:  # graphs, recompiles, graph breaks and CUDA-graph skips of a compiled engine
            results[name]["compile_counters"] = {
                key: dict(list(value.items())[:20]) for key, value in compiled.items()
            }
        print(name, results[name], flush=True)
        write_result(
            "predict_throughput" + args.tag,
            {"command": command, "partial": True, "new_tokens_each": NEW_TOKENS, "results": results},
        )
    path = write_result(
        "predict_throughput" + args.tag, {"command": command, "new_tokens_each": NEW_TOKENS, "results": results}
    )
    base = results.get("seed_like", {}).get("new_tokens_per_s")
    print(f"\n{'engine':18s} {'new tok/s':>9s} {'ex/s':>7s} {'dev-set min':>11s} {'peak GiB':>8s} {'x seed':>7s}")
    for name, row in results.items():
        if "error" in row:
            print(f"{name:18s} ERROR {row['error'][:90]}")
            continue
        new_per_s = row.get("new_tokens_per_s", 0)  # the read-out decodes nothing
        speedup = new_per_s / base if base else float("nan")
        print(
            f"{name:18s} {new_per_s:>9,} {row['examples_per_s']:>7} {row['minutes_for_dev_set']:>11} "
            f"{row['peak_memory_gib']!s:>8} {speedup:>7.2f}"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
