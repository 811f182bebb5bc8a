"""JSON-schema-constrained decoding: llguidance, xgrammar and outlines (outlines-core) against free decoding.

For each library: the time to prepare the tokenizer and compile the CoT answer schema
(``prompts.COT_SCHEMA`` with the decoding options the engine uses: ", " / ": " separators, no free
whitespace), the process memory it adds, and new tokens per second of greedy ``generate`` with its
logits processor at each batch size, next to the same ``generate`` without one. llguidance runs
through the project's own processor (``nli_cot_hub.constrained``: budget-aware closing included),
xgrammar through ``xgrammar.contrib.hf.LogitsProcessor``, outlines through its outlines-core backend.
A library that is not installed is skipped and listed.

CPU, the embedded model (SmolLM2-135M-Instruct) on real coursework pairs with the fine-tuning prompt:

    python -m bench.constrained_decoding --batch-sizes 1,8 --rows 16 --new-tokens 64 --threads 1

GPU, the random-weight Mistral-7B-v0.3 (bench/common.py) with the real v0.3 tokenizer from
mistral-common, at the engine's GPU batch size:

    python -m bench.constrained_decoding --model random-mistral --batch-sizes 1,512 --rows 512 \\
        --single-rows 16 --new-tokens 128

Results: bench/results/constrained_decoding_<tag>.json (``$OUT`` moves the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import torch

LIBRARIES = ("llguidance", "xgrammar", "outlines")


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load(model_name: str):
    """(model, tokenizer, device) for the embedded model or the random-weight Mistral-7B-v0.3."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if model_name == "random-mistral":
        from bench.common import random_mistral_dir
        from nli_cot_hub.train.model import mistral_common_tokenizer

        path, tokenizer = random_mistral_dir(), mistral_common_tokenizer("v3")
    else:
        from nli_cot_hub.models import resolve_model

        path = resolve_model(model_name)
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tokenizer, device


def default_pairs_file() -> str:
    from tests.conftest import SHARED_DATA

    return str(SHARED_DATA / "comp34812_nli" / "dev_jd0g.csv")


def prompts(tokenizer, rows: int, pairs_file: str) -> list[list[int]]:
    import pandas as pd

    from nli_cot_hub.chat_format import prompt_messages

    frame = pd.read_csv(pairs_file).head(rows)
    texts = [
        tokenizer.apply_chat_template(prompt_messages(p, h), tokenize=False, add_generation_prompt=True)
        for p, h in zip(frame["premise"], frame["hypothesis"])
    ]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def vocab_size(model, tokenizer) -> int:
    return max(len(tokenizer), model.get_output_embeddings().weight.shape[0])


def make_processor(library: str, model, tokenizer, schema: dict, new_tokens: int):
    """(factory of one processor per batch, seconds to prepare and compile)."""
    started = time.perf_counter()
    if library == "llguidance":
        from nli_cot_hub.constrained import Grammars, SchemaLogitsProcessor

        grammars = Grammars(tokenizer, [tokenizer.eos_token_id], vocab_size(model, tokenizer))
        compiled = grammars.compile(schema)
        factory = lambda rows: SchemaLogitsProcessor([compiled] * rows, new_tokens)  # noqa: E731
    elif library == "xgrammar":
        import xgrammar
        from xgrammar.contrib.hf import LogitsProcessor

        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size(model, tokenizer))
        compiled = xgrammar.GrammarCompiler(info).compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(", ", ": ")
        )
        factory = lambda rows: LogitsProcessor(compiled)  # noqa: E731
    else:
        import outlines
        from outlines.backends.outlines_core import OutlinesCoreBackend

        backend = OutlinesCoreBackend(outlines.from_transformers(model, tokenizer))
        # No whitespace between JSON tokens but single spaces after the separators, as the others.
        processor = backend.get_json_schema_logits_processor(json.dumps(schema), whitespace_pattern=r"[ ]?")

        def factory(rows):
            processor.reset()
            return processor

    return factory, time.perf_counter() - started


def timed_generate(model, tokenizer, device, batches, new_tokens: int, factory=None) -> dict:
    from transformers import LogitsProcessorList

    generated, started, valid, answers = 0, time.perf_counter(), 0, 0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for batch in batches:
        inputs = tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(device)
        extra = {"logits_processor": LogitsProcessorList([factory(len(batch))])} if factory else {}
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
        new = output[:, inputs["input_ids"].shape[1] :]
        generated += int((new != tokenizer.pad_token_id).sum())
        for row in new.tolist():
            answers += 1
            try:
                json.loads(tokenizer.decode(row, skip_special_tokens=True))
                valid += 1
            except ValueError:
                pass
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {
        "seconds": round(seconds, 2),
        "new_tokens": generated,
        "new_tokens_per_s": round(generated / seconds, 1),
        "valid_json": f"{valid}/{answers}",
    }
    if device == "cuda":
        result["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="embedded, a model folder, or random-mistral (GPU)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rows", type=int, default=16, help="prompts per timed run")
    parser.add_argument(
        "--single-rows",
        type=int,
        default=8,
        help="prompts timed at batch size 1 (one generate call each, so kept few on a GPU)",
    )
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--pairs", default=None, help="CSV with premise and hypothesis columns (default: the coursework dev set)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tag", default=None, help="result file suffix (default: cpu or the GPU name)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from nli_cot_hub.prompts import COT_SCHEMA

    model, tokenizer, device = load(args.model)
    encoded = prompts(tokenizer, args.rows, args.pairs or default_pairs_file())
    sizes = [int(size) for size in args.batch_sizes.split(",")]

    def batches(size):
        rows = encoded if size > 1 else encoded[: args.single_rows]
        return [rows[start : start + size] for start in range(0, len(rows), size)]

    # A short warm-up at every timed shape, so that no timed run (free decoding comes first) pays for lazy
    # initialisation, kernel selection or the allocator growing to a new batch size.
    for size in sizes:
        timed_generate(model, tokenizer, device, batches(size)[:1], 8)

    results = {
        "free": {str(size): timed_generate(model, tokenizer, device, batches(size), args.new_tokens) for size in sizes}
    }
    skipped = {}
    for library in args.libraries.split(","):
        before = rss_mib()
        try:
            factory, compile_s = make_processor(library, model, tokenizer, COT_SCHEMA, args.new_tokens)
            entry = {"compile_s": round(compile_s, 3), "rss_added_mib": round(rss_mib() - before, 1)}
            for size in sizes:
                entry[str(size)] = timed_generate(model, tokenizer, device, batches(size), args.new_tokens, factory)
                free = results["free"][str(size)]["new_tokens_per_s"]
                entry[str(size)]["vs_free"] = round(entry[str(size)]["new_tokens_per_s"] / free, 3)
        except Exception as error:
            skipped[library] = f"{type(error).__name__}: {error}"[:300]
            print(library, "skipped:", skipped[library], flush=True)
            continue
        results[library] = entry
        print(library, json.dumps(entry), flush=True)

    versions = {}
    for name in ("llguidance", "xgrammar", "outlines", "outlines_core", "transformers", "torch"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    payload = {
        "command": shlex.join(
            [
                os.path.basename(sys.executable),
                "-m",
                "bench.constrained_decoding",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "model": args.model,
        "rows": args.rows,
        "single_rows": min(args.single_rows, args.rows),
        "new_tokens": args.new_tokens,
        "versions": versions,
        "results": results,
        "skipped": skipped,
    }
    from bench.common import write_result

    tag = args.tag or ("cpu" if device == "cpu" else torch.cuda.get_device_name(0).split()[-1].lower())
    print(f"wrote {write_result(f'constrained_decoding_{tag}', payload)}")


if __name__ == "__main__":
    main()
