"""The local engine's default GPU batch on smaller cards: does the batch sized from free memory fit?

For each budget (GiB left free on the GPU; a ballast tensor holds the rest, so an 80 GB or 141 GB card
stands in for a 24/40/48 GB one), ``LocalEngine`` loads the random-weight Mistral-7B-v0.3 in bf16 with
no ``batch_size`` and predicts ``--prompts`` real-length prompts in the fine-tuning chat format through
the base v0.3 tokenizer (no chat template: the chat rule's [INST] format). Random weights seldom emit
EOS, so every answer runs to ``--max-new-tokens``: the KV cache's worst case. Recorded per budget: the
batch the engine chose, peak memory above the ballast, out-of-memory or not, new tokens per second.

    python -m bench.predict_memory_batch --budgets 24,40,80 --prompts 512 --max-new-tokens 256
    BENCH_TINY=1 python -m bench.predict_memory_batch --budgets 1 --prompts 8 --max-new-tokens 4   # CPU smoke
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import torch

from bench.common import TINY, measured_length_pairs, random_mistral_dir, write_result

GIB = 2**30
WORDS = (
    "the a man woman child dog plays runs sits near park street house water ball red blue old young "
    "two three people group outside inside happy quickly slowly while holding looking at under over"
).split()


def model_with_tokenizer():
    """The random-weight model folder, with Mistral-7B-v0.3's tokenizer (from mistral-common) and no template."""
    from nli_cot_hub.train.model import mistral_common_tokenizer

    folder = random_mistral_dir()
    if not (folder / "tokenizer_config.json").exists():
        tokenizer = mistral_common_tokenizer("v3")
        tokenizer.chat_template = None  # as the base model ships
        tokenizer.save_pretrained(folder)
    return folder


def conversations(count: int, seed: int = 3) -> list[list[dict]]:
    """Fine-tuning prompts whose premise + hypothesis take about the measured prompt lengths in tokens."""
    from nli_cot_hub.chat_format import prompt_messages

    rng = random.Random(seed)
    pairs = measured_length_pairs()
    result = []
    for _ in range(count):
        prompt_tokens, _ = rng.choice(pairs)
        words = max(6, int((prompt_tokens - 60) * 0.75))  # ~60 tokens of format; ~1.3 tokens per word
        text = [rng.choice(WORDS) for _ in range(words)]
        cut = max(3, words * 3 // 4)
        result.append(prompt_messages(" ".join(text[:cut]) + ".", " ".join(text[cut:]) + "."))
    return result


def run_budget(folder, budget_gib: float, prompts: list[list[dict]], max_new_tokens: int) -> dict:
    from nli_cot_hub.local_engine import LocalEngine

    ballast, ballast_bytes = None, 0
    if not TINY:
        gc.collect()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        ballast_bytes = max(0, free - int(budget_gib * GIB))
        ballast = torch.empty(ballast_bytes, dtype=torch.uint8, device="cuda") if ballast_bytes else None
        torch.cuda.reset_peak_memory_stats()
    engine = LocalEngine(str(folder), progress=False, device="cpu" if TINY else None)
    if TINY:  # the CPU smoke test exercises the same sizing with a pretend budget
        engine.auto_batch, engine.free_bytes_before_load = True, int(budget_gib * GIB)
    row: dict = {"budget_gib": budget_gib, "free_gib_before_load": round(engine.free_bytes_before_load / GIB, 2)}
    started = time.perf_counter()
    try:
        generations = engine.generate(prompts, max_new_tokens=max_new_tokens)
        seconds = time.perf_counter() - started
        new_tokens = sum(samples[0].completion_tokens for samples in generations)
        row.update(
            status="ok",
            seconds=round(seconds, 1),
            new_tokens=new_tokens,
            new_tokens_per_s=round(new_tokens / seconds, 1),
            longest_prompt=max(samples[0].prompt_tokens for samples in generations),
        )
    except torch.OutOfMemoryError as error:
        row.update(status="out of memory", error=str(error)[:300])
    row["batch_size"] = engine.batch_size
    if not TINY:
        row["peak_gib_above_ballast"] = round((torch.cuda.max_memory_allocated() - ballast_bytes) / GIB, 2)
    del engine, ballast
    gc.collect()
    if not TINY:
        torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description="Default GPU batch of the local engine against free memory.")
    parser.add_argument("--budgets", default="24,40,80", help="GiB left free on the GPU, comma-separated")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    args = parser.parse_args()
    folder = model_with_tokenizer()
    prompts = conversations(args.prompts)
    rows = []
    for budget in (float(value) for value in args.budgets.split(",")):
        print(f"=== budget {budget:g} GiB", flush=True)
        rows.append(run_budget(folder, budget, prompts, args.max_new_tokens))
        print(rows[-1], flush=True)
        write_result(
            "predict_memory_batch" + args.tag,
            {"partial": True, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens, "runs": rows},
        )
    path = write_result(
        "predict_memory_batch" + args.tag,
        {"prompts": args.prompts, "max_new_tokens": args.max_new_tokens, "runs": rows},
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
