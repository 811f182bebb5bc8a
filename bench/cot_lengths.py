"""Token lengths of real CoT training records under the Mistral-7B-v0.3 tokenizer (CPU).

The GPU benchmarks train on synthetic token ids whose (prompt, completion) lengths are drawn from
this measured distribution, so they need neither the data nor the tokenizer.

    python bench/cot_lengths.py --data ../shared/data/comp34812_nli_jd0g_cot/dev_missing_gold.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from nli_cot_hub.chat_format import completion_text, prompt_messages

V3_TOKENIZER = "mistral_instruct_tokenizer_240323.model.v3"  # Mistral-7B-v0.3's 32,768-token vocabulary


def mistral_v3_processor():
    import sentencepiece

    spec = importlib.util.find_spec("mistral_common")
    if spec is None:
        raise SystemExit("needs the PyPI package mistral-common (it ships Mistral's tokenizer files)")
    path = Path(spec.origin).parent / "data" / V3_TOKENIZER
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def instruct_text(premise: str, hypothesis: str) -> str:
    # Mistral v0.3 instruct layout: the system text is folded into the first user turn.
    system, user = (m["content"] for m in prompt_messages(premise, hypothesis))
    return f"[INST] {system}\n\n{user} [/INST]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/comp34812_nli_jd0g_cot/dev_missing_gold.csv")
    parser.add_argument("--out", default="bench/results/cot_lengths_mistral_v3.json")
    args = parser.parse_args()
    processor = mistral_v3_processor()
    rows = pd.read_csv(args.data, dtype=str, keep_default_na=False)
    prompts, completions = [], []
    for premise, hypothesis, thought, prediction in zip(
        rows["premise"], rows["hypothesis"], rows["thoughts"], rows["prediction"]
    ):
        prompts.append(len(processor.encode(instruct_text(premise, hypothesis))) + 1)  # + BOS
        completions.append(len(processor.encode(completion_text(thought, int(float(prediction))))) + 1)  # + EOS
    total = np.array(prompts) + np.array(completions)
    thought_only = np.array(completions)
    summary = {
        "source": str(Path(args.data).name),
        "rows": len(total),
        "tokenizer": V3_TOKENIZER,
        "prompt_plus_completion": {
            q: int(np.percentile(total, float(q))) for q in ("0", "5", "25", "50", "75", "95", "99", "100")
        },
        "completion": {q: int(np.percentile(thought_only, float(q))) for q in ("0", "50", "95", "100")},
        "over_512": int((total > 512).sum()),
        "pairs": [[int(p), int(c)] for p, c in zip(prompts, completions)],
    }
    Path(args.out).write_text(json.dumps(summary))
    print(json.dumps({k: v for k, v in summary.items() if k != "pairs"}, indent=2))


if __name__ == "__main__":
    main()
