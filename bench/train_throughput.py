"""QLoRA training throughput on one GPU: a seed-like configuration against the project's levers.

Each configuration trains the random-weight Mistral-7B-v0.3 (NF4, double quant, bf16 compute,
LoRA r=32/alpha=64 on the 7 projections, completion-only loss, effective batch 64) with TRL's
SFTTrainer on synthetic examples whose lengths follow real CoT records, and reports real
(non-pad) tokens/s, padded tokens/s, peak memory and minutes per epoch of 25k examples.

    python -m bench.train_throughput [--configs seed_like,padding_free_b16] [--steps 8] [--tag _h200]

Predictions written before the run (bench/README.md keeps them with the outcomes):
  seed_like          pads every row to 512; real rows median ~294 tokens -> ~57% of compute is real.
  group_b16          pad to the longest in length-grouped micro-batches of 16: ~1.7x real tok/s.
  padding_free_b16   no pad at all (one flattened row, block-diagonal mask under SDPA): ~1.8x.
  padding_free_b16_liger  + Liger RMSNorm/SwiGLU/RoPE/fused linear-CE: a further ~10-20%.
  padding_free_b32_liger  bigger micro-batch amortises 4-bit dequantisation: a further ~10%.
Written before the H200 run of the second set:
  padding_free_b32_liger_bf16_flex  FlexAttention's document mask skips the off-diagonal blocks that SDPA
                     computed; no pad at all (length groups still pad ~18%): ~1.15x group_b32_liger_bf16.
  group_b32_liger_bf16_compile  torch.compile around 4-bit matmuls breaks its graph at every bitsandbytes
                     call; the fused norms and elementwise ops between them: +0-10%, if it compiles at all.
  bf16_lora_group_b32_liger     no NF4 dequantisation (3 per weight per step): ~1.3x, peak ~25 GiB.
  bf16_lora_group_b16_liger_nockpt  and no recompute (a third of the forward work): ~1.5x, peak ~60 GiB.
Written after the 2026-12-07 runs, where a configuration's first steps in a fresh process ran up to 2.5x slower
than the same batches later in the process:
  group_b32_liger_bf16_nocudnn  SDPA without its cuDNN backend, which builds an execution plan for every new
                     (batch, width) shape that length-grouped batches bring: steadier first steps, and if cuDNN's
                     attention kernel was the faster one, 0-5% slower once warm.
  group_b32_liger_bf16_nodropout  LoRA dropout 0 instead of the recipe's 0.05: PEFT then skips the dropout of each
                     adapter's input (5% of the profiled step's kernel time, plus the copy it makes): ~1.05x.
Written before the H200 run of 2026-12-07 (every configuration reads the same synthetic batches, so a later one meets
widths an earlier one already met):
  group_b64_liger_bf16_nodropout  micro-batch 64 (one micro-batch an optimizer step): half the launches per token
                     against the profile's ~22% of idle device time: ~1.1x the b32 one, peak ~21 GiB.
  group_b32_liger_bf16_nodropout_pad64  widths rounded up to a multiple of 64: ~8 shapes instead of one per
                     micro-batch, so the warm-up meets nearly all of them, at ~10% more padded tokens: steadier
                     steps; faster than the unrounded one only where first use of a width is what costs.
Added after those results (dropout 0 and SDPA without cuDNN had won), measured without a prediction written first:
  group_b{32,16}_liger_bf16_nodropout_nocudnn  both winners together, at micro-batch 32 and 16.
  group_b{8,16,32}_liger_bf16_nodropout_nocudnn_ckpt2  transformers' `every_n_layers=2`: half the decoder layers
                     recompute their forward in the backward pass, the other half keep their activations.
  group_b8_liger_bf16_nodropout_nocudnn_nockpt  no recompute at all, at the micro-batch whose activations fit 24 GiB.
Written before the run of 2026-12-07 that followed (the b16 every_n_layers=2 setting had peaked at 24.31 GiB):
  group_b16_liger_bf16_nodropout_nocudnn_ckpt2_adam8  bitsandbytes' 8-bit AdamW: the two moments of the ~84M fp32
                     LoRA weights take 1 byte each instead of 4, 0.67 GB -> 0.17 GB, so ~23.8 GiB peak; the optimizer
                     step is a few ms of a ~2 s step: same speed within the spread.
  group_b16_liger_bf16_nocudnn_ckpt2_adam8  the same with the 24 GiB recipe's LoRA dropout 0.05: the kept layers
                     also hold each adapter input's dropped copy: ~0.85x the dropout-0 rate, peak over 24 GiB.
Written before the run of 2026-12-08 (its outcomes added after it). The configurations above were thought to
train fp32 LoRA weights (PEFT's default), while TRL's SFTTrainer casts a quantized model's adapters to bf16 as the
QLoRA paper did:
  fast_recipe        the fast recipe's settings with bf16 adapters, as train.py trains them: no fp32 master weights
                     and no bf16 copy of them made by autocast at each adapter call (7 projections x 32 layers,
                     three passes a step): 1.00-1.03x the fp32-adapter setting, a peak ~0.3 GiB lower, ~24.0 GiB.
                     Outcome: the same peak to the hundredth (24.31 GiB), because SFTTrainer casts the adapters of any
                     4-bit model it is handed, a PeftModel included: every QLoRA configuration here already trained
                     bf16 adapters, and fast_recipe is group_b16_liger_bf16_nodropout_nocudnn_ckpt2 under a new name
                     (the result files now record the adapters' dtype).
  fast_recipe_keep15  the same with 15 of the 32 decoder layers keeping their activations instead of 16 (one
                     kept layer holds ~1.0 GiB at 16 x 512 tokens): ~23 GiB peak, 0.98-0.99x fast_recipe
                     (one more layer recomputed of 32: 81 forward passes' worth of work instead of 80).
                     Run once with layer 31 among the recomputed ones: the same 24.31 GiB peak to the hundredth, as
                     the recompute of the last layer, first in the backward pass, holds what keeping it would have.
                     Now the last layer is always kept: ~23.1 GiB predicted.
Written after that run, whose per-step peaks showed that the first micro-batch of each length group, the widest,
sets the peak, and most micro-batches are far narrower:
  fast_recipe_keep14  14 kept: ~22 GiB, leaving room for the allocator's reserve (~0.7 GiB above the peak) and the
                     CUDA context on a 24 GiB card; 0.97-0.98x fast_recipe.
  fast_recipe_budget14  a budget of 14 x 16 x 512 kept layer-tokens (`kept_layer_tokens`): each micro-batch keeps as
                     many layers as fit, 14 at the widest (16 x 512) and all 32 at 16 x 224 or narrower. Counting
                     forward passes over the widths of the 2026-12-08 run (a kept layer 2, a recomputed one 3; that
                     count gave 1.20x for every_n_layers 2, measured 1.21x): 1.09x fast_recipe, at keep14's ~22 GiB.
  fast_recipe_budget15  the same with 15 at the widest: 1.12x fast_recipe, ~23.1 GiB.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import statistics
import sys
import time

import torch

from bench.common import (
    LORA_TARGETS,
    TINY,
    at_least,
    names_from,
    random_mistral_dir,
    stub_tokenizer,
    sync,
    synthetic_examples,
    write_result,
)

EFFECTIVE_BATCH = 64
EPOCH_EXAMPLES = 25_000
WARMUP_STEPS = 2  # compilation, allocator growth and the first length groups settle in these


def grouped_bf16(batch: int, gradient_checkpointing: bool = True, **extra) -> dict:
    """Length-grouped micro-batches with Liger kernels, norms and lm_head left in bf16: the shipped recipe's
    settings, at ``batch`` and with ``extra`` levers."""
    return dict(
        per_device_train_batch_size=batch,
        train_sampling_strategy="group_by_length",
        gradient_checkpointing=gradient_checkpointing,
        use_liger_kernel=True,
        keep_bf16=True,
        **extra,
    )


CONFIGS = {
    "seed_like": dict(per_device_train_batch_size=4, pad_to_multiple_of=512, gradient_checkpointing=True),
    "group_b16": dict(
        per_device_train_batch_size=16, train_sampling_strategy="group_by_length", gradient_checkpointing=True
    ),
    "padding_free_b16": dict(per_device_train_batch_size=16, padding_free=True, gradient_checkpointing=True),
    "padding_free_b16_liger": dict(
        per_device_train_batch_size=16, padding_free=True, gradient_checkpointing=True, use_liger_kernel=True
    ),
    "group_b32_liger": dict(
        per_device_train_batch_size=32,
        train_sampling_strategy="group_by_length",
        gradient_checkpointing=True,
        use_liger_kernel=True,
    ),
    # After the configurations above: keep the norms and lm_head in bf16 (prepare_model_for_kbit_training
    # upcasts them to fp32: a 32768x4096 fp32 matmul per micro-batch), and trade recompute for memory.
    "group_b32_liger_bf16": grouped_bf16(32),
    "group_b64_liger_bf16": grouped_bf16(64),
    "group_b8_liger_bf16_nockpt": grouped_bf16(8, gradient_checkpointing=False),
    "padding_free_b32_liger": dict(
        per_device_train_batch_size=32, padding_free=True, gradient_checkpointing=True, use_liger_kernel=True
    ),
    # Padding-free with FlexAttention: transformers turns the packed rows' position ids into a document mask
    # that FlexAttention skips block by block, where SDPA computed the whole square of the flattened row.
    "padding_free_b32_liger_bf16_flex": dict(
        per_device_train_batch_size=32,
        padding_free=True,
        gradient_checkpointing=True,
        use_liger_kernel=True,
        keep_bf16=True,
        attn_implementation="flex_attention",
    ),
    "group_b32_liger_bf16_compile": grouped_bf16(32, torch_compile=True),
    "group_b32_liger_bf16_nocudnn": grouped_bf16(32, cudnn_attention=False),
    "group_b32_liger_bf16_nodropout": grouped_bf16(32, lora_dropout=0.0),
    "group_b64_liger_bf16_nodropout": grouped_bf16(64, lora_dropout=0.0),
    "group_b32_liger_bf16_nodropout_pad64": grouped_bf16(32, lora_dropout=0.0, pad_to_multiple_of=64),
    "group_b32_liger_bf16_nodropout_nocudnn": grouped_bf16(32, lora_dropout=0.0, cudnn_attention=False),
    "group_b16_liger_bf16_nodropout_nocudnn": grouped_bf16(16, lora_dropout=0.0, cudnn_attention=False),
    "group_b16_liger_bf16_nodropout_nocudnn_ckpt2": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2
    ),
    "group_b8_liger_bf16_nodropout_nocudnn_ckpt2": grouped_bf16(
        8, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2
    ),
    # The fast recipe's settings with 8-bit AdamW (bitsandbytes): the LoRA weights' two moments in 8 bits,
    # expected ~0.5 GiB less at r=32 on the 7 projections (bf16 moments, as SFTTrainer casts the adapters: ~0.16).
    "group_b16_liger_bf16_nodropout_nocudnn_ckpt2_adam8": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2, optim="adamw_bnb_8bit"
    ),
    "group_b16_liger_bf16_nocudnn_ckpt2_adam8": grouped_bf16(
        16, cudnn_attention=False, checkpoint_every=2, optim="adamw_bnb_8bit"
    ),
    "group_b8_liger_bf16_nodropout_nocudnn_nockpt": grouped_bf16(
        8, gradient_checkpointing=False, lora_dropout=0.0, cudnn_attention=False
    ),
    "group_b32_liger_bf16_nodropout_nocudnn_ckpt2": grouped_bf16(
        32, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2
    ),
    # The fast recipe's settings, and the same with fewer layers keeping their activations so that the peak fits
    # 24 GiB (the last layer always among the kept ones).
    "fast_recipe": grouped_bf16(16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2),
    "fast_recipe_keep15": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2, kept_layers=15
    ),
    "fast_recipe_keep14": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2, kept_layers=14
    ),
    # A budget of kept layer-tokens instead of a fixed count: 14 or 15 layers at the widest micro-batch (16 x 512)
    "fast_recipe_budget14": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2, kept_layer_tokens=14 * 16 * 512
    ),
    "fast_recipe_budget15": grouped_bf16(
        16, lora_dropout=0.0, cudnn_attention=False, checkpoint_every=2, kept_layer_tokens=15 * 16 * 512
    ),
    # bf16 LoRA without quantization (cards with >= 40 GB): no NF4 dequantisation in any matmul.
    "bf16_lora_group_b32_liger": grouped_bf16(32, quantize=False),
    "bf16_lora_group_b16_liger_nockpt": grouped_bf16(16, gradient_checkpointing=False, quantize=False),
}
MODEL_KEYS = (
    "per_device_train_batch_size",
    "keep_bf16",
    "quantize",
    "attn_implementation",
    "cudnn_attention",
    "lora_dropout",
    "checkpoint_every",
    "kept_layers",
    "kept_layer_tokens",
)


def load_qlora_model(
    model_dir,
    checkpointing: bool = True,
    keep_bf16: bool = False,
    quantize: bool = True,
    attention: str = "sdpa",
    lora_dropout: float = 0.05,
):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if TINY:  # bitsandbytes on CPU is too slow to smoke-test the loop; 4-bit is the GPU path
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        return get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        )
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=quantization if quantize else None,
        dtype=torch.bfloat16,
        device_map={"": 0},
        attn_implementation=attention,
    )
    if keep_bf16:
        # What prepare_model_for_kbit_training does, minus its fp32 upcast of every non-quantized weight.
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    lora = LoraConfig(
        r=32, lora_alpha=64, lora_dropout=lora_dropout, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    # SFTTrainer then casts the LoRA weights of a 4-bit model to bf16, as for the recipes (result: adapter_dtype)
    return get_peft_model(model, lora)


def profile_summary(prof, rows: int = 15) -> dict:
    """Kernel time against wall time of what ``prof`` recorded, and the operators that took the most device time."""
    from torch.autograd import DeviceType

    # Kernels only: an operator's device time repeats that of the kernels it launched.
    kernel_us = sum(event.device_time_total for event in prof.events() if event.device_type != DeviceType.CPU)
    sort_by = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return {
        "kernel_s": round(kernel_us / 1e6, 3),
        "top_operators": prof.key_averages().table(sort_by=sort_by, row_limit=rows),
    }


def run_config(
    name: str, overrides: dict, model_dir, steps: int, profile: bool = False, warmup: int = WARMUP_STEPS
) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    micro = overrides["per_device_train_batch_size"]
    total_steps = steps + warmup + int(profile)  # a profiled step comes after the timed ones, untimed
    examples = synthetic_examples(EFFECTIVE_BATCH * total_steps, seed=1)
    if overrides.get("padding_free"):  # TRL leaves truncation to us in padding-free mode
        examples = [{key: value[:512] for key, value in example.items()} for example in examples]
    dataset = Dataset.from_list(examples)
    step_times: list[float] = []
    step_real: list[int] = []  # real tokens of each optimizer step
    counts = {"padded": 0, "step_real": 0}
    step_widths: list[list[int]] = []  # padded width of each micro-batch, per optimizer step
    step_peaks: list[float] = []  # peak allocated GiB within each optimizer step
    kept_layers: list[int] = []
    step_kept: list[list[int]] = []  # layers kept in each micro-batch, per optimizer step (with a token budget)

    profiled = {}

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            from nli_cot_hub.train import activations

            if "kept_layers" in overrides:
                kept_layers.extend(activations.keep_activations(model, overrides["kept_layers"]))
            if "kept_layer_tokens" in overrides:
                activations.keep_within_budget(
                    model, overrides["kept_layer_tokens"], lambda tokens, kept: step_kept[-1].append(kept)
                )

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            counts["step_real"] = 0
            step_widths.append([])
            step_kept.append([])
            if profile and state.global_step == total_steps - 1:
                from torch.profiler import ProfilerActivity

                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.start()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            step_times.append(time.perf_counter() - self.started)
            step_real.append(counts["step_real"])
            if torch.cuda.is_available():
                step_peaks.append(round(torch.cuda.max_memory_allocated() / 2**30, 2))
            if getattr(self, "profiler", None) is not None:
                self.profiler.stop()
                profiled.update(profile_summary(self.profiler), wall_s=round(step_times[-1], 3))
                profiled["device_busy_percent"] = round(100 * profiled["kernel_s"] / step_times[-1], 1)
                self.profiler = None

    class CountingTrainer(SFTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            real = int(mask.sum()) if mask is not None else ids.numel()
            counts["step_real"] += real
            step_widths[-1].append(ids.shape[1])
            if warmup <= len(step_times) < warmup + steps:  # only the timed steps are counted
                counts["padded"] += ids.numel()
            return super().training_step(model, inputs, num_items_in_batch)

    config = SFTConfig(
        output_dir=f"/tmp/bench-train/{name}",
        max_steps=total_steps,
        learning_rate=2e-4,
        gradient_accumulation_steps=EFFECTIVE_BATCH // micro,
        warmup_steps=150,
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        bf16=not TINY,
        use_cpu=TINY,
        max_length=None if overrides.get("padding_free") else 512,
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=2,
        seed=0,
        # every_n_layers > 1: only every n-th decoder layer recomputes its forward; the others keep their activations
        gradient_checkpointing_kwargs={"use_reentrant": False, "every_n_layers": overrides.get("checkpoint_every", 1)},
        **{k: v for k, v in overrides.items() if k not in MODEL_KEYS},
        per_device_train_batch_size=micro,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model = load_qlora_model(
        model_dir,
        overrides.get("gradient_checkpointing", True),
        overrides.get("keep_bf16", False),
        overrides.get("quantize", True),
        overrides.get("attn_implementation", "sdpa"),
        overrides.get("lora_dropout", 0.05),
    )
    model_gib = round(torch.cuda.memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    trainer = CountingTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=stub_tokenizer(), callbacks=[StepClock()]
    )
    # SDPA's cuDNN backend plans each new shape it meets; without it masked attention takes the memory-efficient one.
    torch.backends.cuda.enable_cudnn_sdp(overrides.get("cudnn_attention", True))
    try:
        trainer.train()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
    # Each step resets the peak: the run's peak is its largest step's, model loading aside.
    timed_steps = slice(warmup, warmup + steps)
    timed = sum(step_times[timed_steps])
    real = sum(step_real[timed_steps])
    real_per_s = real / timed
    mean_real_len = real / (EFFECTIVE_BATCH * steps)
    per_step = sorted(r / t for r, t in zip(step_real[timed_steps], step_times[timed_steps]))
    result = {
        "config": overrides,
        "step_seconds": [round(t, 2) for t in step_times],
        "step_real_tokens": step_real,
        "step_widths": step_widths,
        "real_tokens_per_s": round(real_per_s),
        "real_tokens_per_s_median": round(statistics.median(per_step)),
        "real_tokens_per_s_min_max": [round(per_step[0]), round(per_step[-1])],
        "padded_tokens_per_s": round(counts["padded"] / timed),
        "peak_memory_gib": max(step_peaks) if step_peaks else None,
        "step_peak_gib": step_peaks,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if not TINY else None,
        "minutes_per_epoch_25k": round(EPOCH_EXAMPLES * mean_real_len / real_per_s / 60, 1),
        "final_loss": trainer.state.log_history[-2].get("loss") if len(trainer.state.log_history) > 1 else None,
    }
    if kept_layers:
        result["kept_layers"] = kept_layers
    if any(step_kept):
        result["step_kept_layers"] = step_kept
    result["adapter_dtype"] = str(next(p.dtype for p in model.parameters() if p.requires_grad))
    result["model_gib"] = model_gib
    if profiled:
        result["profile"] = profiled
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="QLoRA training throughput (GPU).")
    parser.add_argument("--configs", type=names_from(CONFIGS), default=list(CONFIGS))
    parser.add_argument(
        "--steps", type=at_least(1), default=8, help="timed optimizer steps per config (after the warm-up steps)"
    )
    parser.add_argument("--warmup-steps", type=at_least(0), default=WARMUP_STEPS, help="untimed optimizer steps first")
    parser.add_argument("--tag", default="", help="result file suffix")
    parser.add_argument(
        "--profile", action="store_true", help="profile one more optimizer step after the timed ones (kernel table)"
    )
    args = parser.parse_args()
    command = shlex.join(["python", "-m", "bench.train_throughput", *sys.argv[1:]])
    model_dir = random_mistral_dir()
    results = {}
    for name in args.configs:
        print(f"=== {name}", flush=True)
        try:
            results[name] = run_config(name, CONFIGS[name], model_dir, args.steps, args.profile, args.warmup_steps)
        except Exception as error:  # one failing lever must not cost the others' numbers
            results[name] = {"config": CONFIGS[name], "error": f"{type(error).__name__}: {error}"[:500]}
            gc.collect()
        print(name, {k: v for k, v in results[name].items() if k not in ("config", "profile")}, flush=True)
        if "profile" in results[name]:
            profiled = results[name]["profile"]
            print(f"device busy {profiled['device_busy_percent']}%\n{profiled['top_operators']}", flush=True)
        write_result(f"train_throughput{args.tag}", {"command": command, "partial": True, "results": results})
    path = write_result(
        f"train_throughput{args.tag}",
        {
            "command": command,
            "warmup_steps": args.warmup_steps,
            "timed_steps": args.steps,
            "effective_batch": EFFECTIVE_BATCH,
            "max_length": 512,
            "lora": {"r": 32, "alpha": 64, "targets": LORA_TARGETS},
            "results": results,
        },
    )
    base = results.get("seed_like", {}).get("real_tokens_per_s")
    print(f"\n{'config':34s} {'real tok/s':>10s} {'median':>7s} {'padded':>8s} {'peak GiB':>8s} {'x seed':>7s}")
    for name, row in results.items():
        if "error" in row:
            print(f"{name:34s} ERROR {row['error'][:80]}")
            continue
        speedup = row["real_tokens_per_s"] / base if base else float("nan")
        print(
            f"{name:34s} {row['real_tokens_per_s']:>10,} {row['real_tokens_per_s_median']:>7,} "
            f"{row['padded_tokens_per_s']:>8,} {row['peak_memory_gib']!s:>8} {speedup:>7.2f}"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
