"""The GPU benchmark scripts, run end to end on the CPU with a 2-layer Mistral (BENCH_TINY=1): a check that each
script and engine still runs and writes its result, not a measurement (no test here asserts a time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(module: str, *args: str, out: Path) -> dict:
    env = {**os.environ, "BENCH_TINY": "1", "OUT": str(out), "BENCH_CACHE": str(out / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (result,) = list(out.glob("*.json"))
    return json.loads(result.read_text())


@pytest.mark.slow
def test_prediction_bench_runs_generation_shared_prefix_and_readout(tmp_path):
    result = run_bench(
        "bench.predict_throughput",
        "--engines",
        "bf16_b512,bf16_b512_shared,static_b512_shared,static_b512_shared_compiled_packed,logprob_b512",
        "--prompts",
        "12",
        out=tmp_path,
    )
    rows = result["results"]
    assert not [name for name, row in rows.items() if "error" in row]
    for name in ("bf16_b512", "bf16_b512_shared", "static_b512_shared", "static_b512_shared_compiled_packed"):
        assert rows[name]["new_tokens"] == 12 * 160 and rows[name]["new_tokens_per_s"] > 0
    # the local engine's compiled decode, forced on the CPU: one graph for the warm-up and the timed batch
    assert rows["static_b512_shared_compiled_packed"]["compile_counters"]["stats"]["unique_graphs"] == 1
    assert rows["static_b512_shared_compiled_packed"]["warmup_shapes"] == 1
    assert rows["logprob_b512"]["examples"] == 12 and rows["logprob_b512"]["examples_per_s"] > 0
    assert result["command"].startswith("python -m bench.predict_throughput --engines")
    assert "partial" not in result


@pytest.mark.slow
def test_decode_profile_reports_each_cache_with_its_kernel_table(tmp_path):
    result = run_bench(
        "bench.profile_decode",
        "--batch",
        "4",
        "--steps",
        "3",
        "--profile-steps",
        "2",
        "--caches",
        "dynamic,static",
        out=tmp_path,
    )
    rows = result["results"]
    assert rows["batch"] == 4 and rows["real_prompt_tokens"] <= 4 * rows["width"]
    for cache in ("dynamic", "static"):
        assert rows[cache]["prefill_s"] > 0 and rows[cache]["decode_ms_per_step"] > 0
        assert "aten::mm" in rows[cache]["profile"]["top_operators"]


@pytest.mark.parametrize(
    ("module", "args", "named"),
    [
        ("bench.predict_throughput", ["--engines", "bf16_b512,bf16_b513"], "unknown bf16_b513"),
        ("bench.train_throughput", ["--steps", "0"], "--steps: 0 is below 1"),
        ("bench.profile_decode", ["--caches", "paged"], "unknown paged"),
    ],
)
def test_bad_arguments_stop_before_any_model_is_built(module, args, named, tmp_path):
    env = {**os.environ, "BENCH_TINY": "1", "OUT": str(tmp_path), "BENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and named in done.stderr
    assert not list(tmp_path.iterdir())  # no model built, no result written
