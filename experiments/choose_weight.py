"""Choose label_loss_weight for ``fmt-thought-first-weighted`` on a validation split carved from the TRAINING data.

    python -m experiments.choose_weight [--weights 1,3,10] [--validation-fraction 0.1] [experiments.run options]

The training pairs of the format runs (``builds/jd0g``, config ``original``) are split by a seeded shuffle
into train and validation (dev and MNLI hard are never looked at). For each weight a thought_first adapter
is trained on the train part with that weight and predicted on the validation part, by generation and by the
log-probability read-out. The weight with the best validation accuracy of the generated answers (the
read-out the weight is meant to repair) wins; a tie goes to the smaller weight. Everything goes to
``<results>/weight-choice/``: the split, one folder per weight, and ``choice.json``, which
``python -m experiments.run fmt-thought-first-weighted`` reads.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.common import BUILD_JD0G, write_json
from experiments.run import (
    RUNS,
    WEIGHT_CHOICE,
    Log,
    environment,
    predict_config,
    train_arguments,
)
from experiments.run import (
    parser as run_parser,
)

DEFAULT_WEIGHTS = (1.0, 3.0, 10.0)


def carve_validation(work: Path, folder: Path, fraction: float, seed: int) -> tuple[Path, Path, dict]:
    """The format runs' training rows split into train/validation (a ``save_to_disk`` DatasetDict that train.py
    reads) and the validation pairs as a CSV that ``nli-cot predict`` reads."""
    from datasets import DatasetDict

    from nli_cot_hub.data import load_dataset_dict

    rows = load_dataset_dict(str(work / BUILD_JD0G), "original")["train"]
    if "correct" in rows.column_names:  # the thoughts train.py keeps: those that reached the gold label
        rows = rows.filter(lambda row: bool(row["correct"]))
    split = rows.train_test_split(test_size=fraction, seed=seed)
    data = folder / "data"
    DatasetDict({"train": split["train"], "validation": split["test"]}).save_to_disk(str(data))
    pairs = folder / "validation.csv"
    split["test"].select_columns(["id", "premise", "hypothesis", "label"]).to_csv(str(pairs), index=False)
    return data, pairs, {"train_rows": len(split["train"]), "validation_rows": len(split["test"])}


def accuracy(path: Path) -> float | None:
    from nli_cot_hub.store import read_records

    records = read_records(path)
    return round(sum(bool(r.correct) for r in records) / len(records), 4) if records else None


def choose(scores: dict[float, dict]) -> float:
    """The weight with the best generated-answer accuracy; the smaller weight on a tie."""
    return max(sorted(scores), key=lambda weight: (scores[weight]["generate"] or 0.0, -weight))


def main(argv: list[str] | None = None) -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",")], default=list(DEFAULT_WEIGHTS))
    own.add_argument("--validation-fraction", type=float, default=0.1)
    mine, rest = own.parse_known_args(argv)
    args = run_parser().parse_args(["fmt-thought-first", *rest])
    if args.smoke:
        from experiments.run import SMOKE

        for key, value in SMOKE.items():
            setattr(args, key, value)
    folder = args.results / Path(WEIGHT_CHOICE).parent
    folder.mkdir(parents=True, exist_ok=True)
    log = Log(folder)
    started = time.monotonic()
    data, pairs, counts = carve_validation(args.work, folder, mine.validation_fraction, args.seed)
    spec = RUNS["fmt-thought-first"]

    def one_weight(weight: float) -> dict:
        run = folder / f"w{weight:g}"
        adapter = run / "adapter"
        log.cli(
            f"train w{weight:g}", *train_arguments(args, data, None, adapter, spec), "--label_loss_weight", str(weight)
        )
        found = {}
        for readout in ("generate", "logprob"):
            output = run / f"validation_{readout}.jsonl"
            # The read-out after the same greedy thoughts reads them instead of generating them again.
            thoughts = str(run / "validation_generate.jsonl") if readout == "logprob" else None
            log.run(
                f"predict w{weight:g} {readout}",
                predict_config(args, spec, pairs, output, adapter, readout=readout, thoughts_from=thoughts),
            )
            found[readout] = accuracy(output)
        return found

    # On a GPU the weights train side by side (a 135M model leaves it mostly idle); on a CPU one at a time.
    workers = len(mine.weights) if args.device == "cuda" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scores: dict[float, dict] = dict(zip(mine.weights, pool.map(one_weight, mine.weights)))
    chosen = choose(scores)
    write_json(
        folder / "choice.json",
        {
            "chosen_weight": chosen,
            "chosen_by": "validation accuracy of the generated answers (tie: smaller weight)",
            "validation_accuracy": {f"{w:g}": s for w, s in scores.items()},
            **counts,
            "validation_fraction": mine.validation_fraction,
            "seed": args.seed,
            "smoke": bool(args.smoke),
            "environment": environment(),
            "steps": log.steps,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    print(f"== label_loss_weight {chosen:g} chosen: validation accuracy {scores}", flush=True)


if __name__ == "__main__":
    main()
