"""Paths and small helpers shared by the experiment scripts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO / "experiments" / "prepared"  # prepare_data's output; ignored by git (experiments/.gitignore)
DEFAULT_RESULTS = REPO / "experiments" / "results"
DEFAULT_DATA_ROOT = Path(os.environ.get("NLI_COT_SHARED_DATA", REPO.parent / "shared" / "data"))

# Files of the prepared work folder (relative to it), written by prepare_data and read by run.
DEV_EVAL = "eval/dev.csv"
MNLI_EVAL = "eval/mnli_hard.csv"  # label = COMP34812-style (neutral -> 1)
MNLI_EVAL_STRICT = "eval/mnli_hard_strict.csv"  # the same rows, label = standard (only entailment -> 1)
JD0G_DIR = "jd0g"
JD0G_ORIGINALS = "train/jd0g_dev_originals.jsonl"  # a CoTRecord store: what `nli-cot reflect` reads
HUMAN_STORE = "train/esnli_human.jsonl"
PAIRS = "train/pairs.csv"  # every training pair once, gold label: TF-IDF and label-only SFT
LABEL_ONLY = "train/label_only.jsonl"
BUILD_JD0G = "builds/jd0g"
BUILD_JD0G_ESNLI = "builds/jd0g_esnli"
MANIFEST = "manifest.json"


def cli(*arguments: str, log: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run one `nli-cot` stage as a separate process (`python -m nli_cot_hub`, so no console script need be
    installed); its output goes to the terminal and, when given, to ``log``."""
    arguments = tuple(shorten(a) for a in arguments)  # the stages run in REPO, so logs stay machine-neutral
    command = [sys.executable, "-m", "nli_cot_hub", *arguments]
    print("$ nli-cot " + " ".join(arguments), flush=True)
    started = time.monotonic()
    if log is None:
        done = subprocess.run(command, cwd=REPO, check=False)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("$ nli-cot " + " ".join(arguments) + "\n")
            handle.flush()
            process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            for line in process.stdout:
                sys.stdout.write(line)
                handle.write(line)
            process.wait()
            done = subprocess.CompletedProcess(command, process.returncode)
    done.seconds = round(time.monotonic() - started, 1)  # type: ignore[attr-defined]
    if check and done.returncode != 0:
        raise SystemExit(f"error: `nli-cot {arguments[0]}` failed with exit code {done.returncode}")
    return done


def run_stage(config, log: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a stage config in a process of its own: GPU memory goes back when the stage ends, and everything it
    prints lands in ``log``. The config crosses over as the command line derived from it."""
    from nli_cot_hub.cli.derive import stage_argv

    return cli(*stage_argv(config), log=log, check=check)


def shorten(argument: str) -> str:
    prefix = str(REPO) + os.sep
    return argument[len(prefix) :] if argument.startswith(prefix) else argument


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, payload) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:  # e.g. a file cut short when a run was stopped
        raise SystemExit(
            f"error: {path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def build_config(work: Path, output: Path, *stores: Path):
    """The data set a run trains on: the author's artifacts (all dev thoughts) plus ``stores``, every pair in
    train; refused if a pair occurs in an evaluation set (that would mean the preparation is wrong)."""
    from nli_cot_hub.build import BuildConfig

    return BuildConfig(
        import_artifacts=str(work / JD0G_DIR),
        import_dev_thoughts=True,
        store=[str(store) for store in stores],
        output_dir=str(output),
        overwrite=True,
        validation_fraction=0.0,
        test_fraction=0.0,
        eval_set=[str(work / DEV_EVAL), str(work / MNLI_EVAL)],
    )
