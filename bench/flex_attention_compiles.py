"""How often transformers' FlexAttention path compiles as padding-free batches change their packed length.

A 2-layer Mistral (``bench.common.tiny_mistral_config``) with FlexAttention runs forward passes over packed rows
(several documents in one row, told apart by restarting position ids, as TRL's padding-free collator builds
them) of changing total length; each pass reports its time and dynamo's count of distinct compiled graphs.
CPU only checks the forward pass (FlexAttention has no CPU backward).

    python -m bench.flex_attention_compiles [--lengths 700,700,913,1211,1500,1500,2048]
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time

import torch

from bench.common import tiny_mistral_config, write_result


def packed_row(total: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and restarting position ids for documents of 100-400 tokens filling ``total`` positions."""
    lengths, left = [], total
    while left > 0:
        lengths.append(min(left, rng.randint(100, 400)))
        left -= lengths[-1]
    positions = torch.cat([torch.arange(length) for length in lengths])[None]
    return torch.randint(0, 1000, (1, total)), positions


def main() -> None:
    from torch._dynamo.utils import counters
    from transformers import MistralForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="700,700,913,1211,1500,1500,2048")
    parser.add_argument("--tag", default="_cpu")
    args = parser.parse_args()
    config = tiny_mistral_config(attn_implementation="flex_attention")
    model = MistralForCausalLM(config).eval()
    rng = random.Random(0)
    passes = []
    for total in (int(length) for length in args.lengths.split(",")):
        ids, positions = packed_row(total, rng)
        started = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids, position_ids=positions)
        passes.append(
            {
                "packed_length": total,
                "seconds": round(time.perf_counter() - started, 3),
                "compiled_graphs_so_far": counters["stats"]["unique_graphs"],
            }
        )
        print(passes[-1], flush=True)
    command = shlex.join(["python", "-m", "bench.flex_attention_compiles", *sys.argv[1:]])
    print("written", write_result(f"flex_attention_compiles{args.tag}", {"command": command, "passes": passes}))


if __name__ == "__main__":
    main()
