"""Where the time of a batch of CoT generation goes (GPU): prefill, each decode step, and the kernels behind them.

One batch of the synthetic prompts of bench/predict_throughput.py (the middle of the length-sorted set, left-padded),
random-weight Mistral-7B-v0.3 in bf16, greedy, for each cache layout asked for:

    python -m bench.profile_decode [--batch 512] [--steps 32] [--caches dynamic,static]

- prefill seconds: `generate` with one new token;
- decode ms per step: (time with 1 + steps new tokens - prefill time) / steps;
- decode kernel ms per step: the summed kernel time of a profiled prefill + decode stretch less that of a profiled
  prefill alone, per step; against the decode ms per step, how busy the GPU is while decoding. Well below 100%
  means the GPU waits for the Python that launches its kernels, which CUDA graphs remove; near 100% means the
  kernels themselves are the cost, and the table of the slowest operators says which.

`static` is the static cache without compile (`disable_compile=True`): preallocated keys/values written in place,
no copy of the cache per step, but attention over the whole allocated width. `compiled` is the same cache with the
decode step compiled into CUDA graphs, as `generate` does by default with a static cache on a GPU (its compile
happens in the warm-up, which is not timed). With BENCH_TINY=1 it runs on the CPU
with a 2-layer model (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from bench.common import DEVICE, at_least, names_from, random_mistral_dir, sync, write_result
from bench.predict_throughput import left_pad, load_bf16, synthetic_prompts

CACHES = {
    "dynamic": {},
    "static": {"cache_implementation": "static", "disable_compile": True},
    # What generate does with a static cache on a GPU by default: the decode step compiled by inductor
    # (mode reduce-overhead: CUDA graphs), the prefill left eager.
    "compiled": {"cache_implementation": "static"},
}


def timed_generate(model, ids, mask, new_tokens: int, cache: str) -> float:
    options = CACHES[cache]
    sync()
    started = time.perf_counter()
    model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        **options,
    )
    sync()
    return time.perf_counter() - started


def kernel_profile(model, ids, mask, steps: int, cache: str, rows: int = 15) -> dict:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = timed_generate(model, ids, mask, 1 + steps, cache)
    # Kernels only: an operator's device time repeats that of the kernels it launched.
    device_us = sum(event.device_time_total for event in prof.events() if event.device_type != DeviceType.CPU)
    table = prof.key_averages().table(
        sort_by="self_device_time_total" if DEVICE == "cuda" else "self_cpu_time_total", row_limit=rows
    )
    return {
        "wall_s": round(wall, 3),
        "kernel_s": round(device_us / 1e6, 3),
        "device_busy_percent": round(100 * device_us / 1e6 / wall, 1),
        "top_operators": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefill, decode-step and kernel profile of one generation batch.")
    parser.add_argument("--batch", type=at_least(1), default=512)
    parser.add_argument("--steps", type=at_least(1), default=32, help="decode steps timed after the prefill")
    parser.add_argument("--profile-steps", type=at_least(1), default=8, help="decode steps under the profiler")
    parser.add_argument("--caches", type=names_from(CACHES), default=["dynamic", "static"])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    command = shlex.join(["python", "-m", "bench.profile_decode", *sys.argv[1:]])
    model = load_bf16(random_mistral_dir())
    prompts = sorted(synthetic_prompts(2 * args.batch), key=len)[args.batch // 2 : args.batch // 2 + args.batch]
    ids, mask = left_pad(prompts)
    results = {"batch": args.batch, "width": ids.shape[1], "real_prompt_tokens": int(mask.sum())}
    for cache in args.caches:
        timed_generate(model, ids, mask, 1 + args.steps, cache)  # warm-up at both shapes
        prefill = min(timed_generate(model, ids, mask, 1, cache) for _ in range(2))
        whole = min(timed_generate(model, ids, mask, 1 + args.steps, cache) for _ in range(2))
        decode_ms = 1000 * (whole - prefill) / args.steps
        profiled = kernel_profile(model, ids, mask, args.profile_steps, cache)
        # The decode steps' own kernel time: the profiled window less a profiled prefill alone.
        prefill_kernel_s = kernel_profile(model, ids, mask, 0, cache)["kernel_s"]
        decode_kernel_ms = 1000 * (profiled["kernel_s"] - prefill_kernel_s) / args.profile_steps
        row = {
            "prefill_s": round(prefill, 3),
            "decode_ms_per_step": round(decode_ms, 1),
            "decode_new_tokens_per_s": round(args.batch * args.steps / (whole - prefill)),
            "prefill_kernel_s": prefill_kernel_s,
            "decode_kernel_ms_per_step": round(decode_kernel_ms, 1),
            "decode_busy_percent": round(100 * decode_kernel_ms / decode_ms, 1),
            "profile": profiled,
        }
        results[cache] = row
        print(
            f"=== {cache}: prefill {row['prefill_s']} s, decode {row['decode_ms_per_step']} ms/step, "
            f"kernels {row['decode_kernel_ms_per_step']} ms/step ({row['decode_busy_percent']}% busy)",
            flush=True,
        )
        print(row["profile"]["top_operators"], flush=True)
        write_result("profile_decode" + args.tag, {"command": command, "results": results})


if __name__ == "__main__":
    main()
