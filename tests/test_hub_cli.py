"""``nli-cot hub upload | download`` against the Hub-protocol test server, run as a real subprocess (fresh
interpreter: HF_ENDPOINT and HF_TOKEN are read from the environment as in real use)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import shared

pytestmark = pytest.mark.server


def unique(name: str) -> str:
    return f"tester/{name}-{uuid.uuid4().hex[:8]}"


def hub_cli(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nli_cot_hub", "hub", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }


@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory) -> Path:
    """The original project's sample artifacts built into a Hub-layout folder (parquet per config/split + card)."""
    from nli_cot_hub.build import build_dataset, import_artifacts, write_local
    from nli_cot_hub.dataset_card import CardInfo, render_card

    built = build_dataset(import_artifacts(shared("comp34812_nli_jd0g_cot")))
    folder = tmp_path_factory.mktemp("built") / "cot_dataset"
    write_local(built, folder, render_card(built, CardInfo()))
    return folder


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, embedded_model_path) -> Path:
    """A real (untrained) LoRA adapter of the embedded model, with a checkpoint folder that must not be uploaded."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(embedded_model_path)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    peft_model.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# test adapter\n")
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "optimizer.pt").write_bytes(b"resumable state, not an artifact")
    return folder


@pytest.mark.slow
def test_guess_repo_type(built_dataset, adapter_dir, tmp_path):
    from nli_cot_hub.hub_transfer import guess_repo_type

    assert guess_repo_type(built_dataset) == "dataset"
    assert guess_repo_type(adapter_dir) == "model"
    (tmp_path / "notes.md").write_text("# results\n")
    assert guess_repo_type(tmp_path) is None
    assert guess_repo_type(tmp_path / "notes.md") is None


def test_dataset_upload_guesses_the_type_and_round_trips(hub_server, built_dataset, tmp_path):
    from datasets import load_dataset

    repo = unique("cot")
    env = hub_server.env(tmp_path / "cache")
    result = hub_cli(["upload", str(built_dataset), repo], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"to dataset {repo}@main" in result.stdout
    assert f"{hub_server.url}/datasets/{repo}" in result.stdout
    assert hub_server.token not in result.stdout + result.stderr

    # The Hub-side reader sees the configs the card declares.
    reflected = load_dataset(repo, "reflected")
    assert sum(len(split) for split in reflected.values()) == 33

    local = tmp_path / "downloaded"
    result = hub_cli(["download", repo, "--repo-type", "dataset", "--local-dir", str(local)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()) == local
    theirs = digests(local)
    theirs.pop(".gitattributes")
    assert theirs == digests(built_dataset)

    only_card = tmp_path / "card_only"
    result = hub_cli(
        ["download", repo, "--repo-type", "dataset", "--include", "README.md", "--local-dir", str(only_card)], env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(digests(only_card)) == ["README.md"]


@pytest.mark.slow
def test_private_adapter_on_a_branch_and_results_beside_it(hub_server, adapter_dir, tmp_path):
    from huggingface_hub import HfApi
    from peft import PeftConfig

    repo = unique("adapter")
    env = hub_server.env(tmp_path / "cache")
    result = hub_cli(["upload", str(adapter_dir), repo, "--private", "--revision", "dev", "-m", "first adapter"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"to model {repo}@dev" in result.stdout

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    assert api.model_info(repo).private is True
    on_dev = api.list_repo_files(repo, revision="dev")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(on_dev)
    assert not any(name.startswith("checkpoint-") for name in on_dev)
    assert "adapter_config.json" not in api.list_repo_files(repo)  # main is untouched
    assert api.list_repo_commits(repo, revision="dev")[0].title == "first adapter"
    assert PeftConfig.from_pretrained(repo, revision="dev").r == 4

    report = tmp_path / "evaluation"
    report.mkdir()
    (report / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    (report / "report.md").write_text("# report\n")
    result = hub_cli(
        ["upload", str(report), repo, "--repo-type", "model", "--revision", "dev", "--path-in-repo", "results"], env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"results/metrics.json", "results/report.md"} <= set(api.list_repo_files(repo, revision="dev"))

    single = hub_cli(["upload", str(report / "metrics.json"), repo, "--revision", "dev"], env)
    assert single.returncode == 2 and "pass --repo-type" in single.stderr  # one file says nothing of its repo
    single = hub_cli(["upload", str(report / "metrics.json"), repo, "--repo-type", "model", "--revision", "dev"], env)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "metrics.json" in api.list_repo_files(repo, revision="dev")

    # A private repo is invisible without the token.
    anonymous = {**env, "HF_TOKEN": ""}
    denied = hub_cli(["download", repo, "--revision", "dev", "--local-dir", str(tmp_path / "nope")], anonymous)
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: ") and len(denied.stderr.strip().splitlines()) == 1

    got = hub_cli(["download", repo, "--revision", "dev", "--local-dir", str(tmp_path / "got")], env)
    assert got.returncode == 0, got.stderr[-3000:]
    assert (tmp_path / "got" / "results" / "metrics.json").exists()
    assert (tmp_path / "got" / "adapter_model.safetensors").read_bytes() == (
        adapter_dir / "adapter_model.safetensors"
    ).read_bytes()


def test_errors_are_one_line(hub_server, tmp_path):
    env = hub_server.env(tmp_path / "cache")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("not a model, not a data set")

    unknown = hub_cli(["upload", str(notes), unique("x")], env)
    assert unknown.returncode == 2 and "pass --repo-type" in unknown.stderr

    no_token = hub_cli(["upload", str(notes), unique("x"), "--repo-type", "model"], {**env, "HF_TOKEN": ""})
    assert no_token.returncode == 1 and "HF_TOKEN" in no_token.stderr

    missing_path = hub_cli(["upload", str(tmp_path / "absent"), unique("x")], env)
    assert missing_path.returncode == 2 and "nothing to upload" in missing_path.stderr

    missing_repo = hub_cli(["download", unique("absent"), "--local-dir", str(tmp_path / "d")], env)
    assert missing_repo.returncode == 1
    assert missing_repo.stderr.startswith("error: ") and len(missing_repo.stderr.strip().splitlines()) == 1

    for result in (unknown, no_token, missing_path, missing_repo):
        assert "Traceback" not in result.stderr


def test_hub_404s_name_the_repo_its_type_and_the_revision(hub_server, built_dataset, tmp_path):
    env = hub_server.env(tmp_path / "cache")
    absent = unique("absent")
    missing = hub_cli(["download", absent, "--repo-type", "dataset", "--local-dir", str(tmp_path / "a")], env)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    [line] = missing.stderr.strip().splitlines()
    assert f"dataset repo '{absent}'" in line and "not found" in line

    repo = unique("cot")
    assert hub_cli(["upload", str(built_dataset), repo], env).returncode == 0
    no_branch = hub_cli(
        [
            "download",
            repo,
            "--repo-type",
            "dataset",
            "--revision",
            "no-such-branch",
            "--local-dir",
            str(tmp_path / "b"),
        ],
        env,
    )
    assert no_branch.returncode == 1 and "Traceback" not in no_branch.stderr
    [line] = no_branch.stderr.strip().splitlines()
    assert repo in line and "no-such-branch" in line


@pytest.fixture
def silent_endpoint():
    """A local socket that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted, stop = [], threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_hub_that_never_answers_times_out_with_retries_and_progress(silent_endpoint, built_dataset, tmp_path):
    env = {"HF_ENDPOINT": silent_endpoint, "HF_TOKEN": "hf_local_test_token", "HF_HOME": str(tmp_path / "home")}
    for arguments in (
        ["upload", str(built_dataset), unique("cot")],
        ["download", unique("cot"), "--local-dir", str(tmp_path / "d")],
    ):
        result = hub_cli([*arguments, "--timeout", "1", "--retries", "1"], env)  # hub_cli bounds it at 300 s
        assert result.returncode == 1 and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert "no answer within 1 s; retry 1 of 1" in lines[0]
        assert lines[-1].startswith("error: ") and "failed 2 time(s)" in lines[-1] and silent_endpoint in lines[-1]


def test_a_refused_hub_port_is_one_line(built_dataset, tmp_path):
    from tests.servers import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_local_test_token", "HF_HOME": str(tmp_path / "home")}
    result = hub_cli(["upload", str(built_dataset), unique("cot"), "--retries", "0"], env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and endpoint in line and "refused" in line.lower()


def test_upload_and_download_as_functions_and_from_a_yaml_config(hub_server, built_dataset, tmp_path):
    from huggingface_hub import HfApi

    from nli_cot_hub.hub_transfer import (
        DownloadConfig,
        Downloaded,
        UploadConfig,
        Uploaded,
        run_download,
        run_upload,
    )

    repo = unique("cot")
    done = run_upload(UploadConfig(path=str(built_dataset), repo_id=repo))
    assert isinstance(done, Uploaded) and done.repo_type == "dataset" and done.revision == "main"
    assert done.path == built_dataset and done.files == len(digests(built_dataset))
    got = run_download(
        DownloadConfig(repo_id=repo, repo_type="dataset", include=["README.md"], local_dir=str(tmp_path / "card"))
    )
    assert isinstance(got, Downloaded) and got.folder == tmp_path / "card"
    assert sorted(digests(got.folder)) == ["README.md"]

    env = hub_server.env(tmp_path / "cache")
    config = tmp_path / "upload.yaml"
    config.write_text(
        f"path: {built_dataset / 'README.md'}\nrepo_id: {repo}\nrepo_type: dataset\n"
        "path_in_repo: card/README.md\ncommit_message: from the file\n"
    )
    result = hub_cli(["upload", "--config", str(config), "-m", "from the flag"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    assert api.list_repo_commits(repo, repo_type="dataset")[0].title == "from the flag"
    assert "card/README.md" in api.list_repo_files(repo, repo_type="dataset")

    config = tmp_path / "download.yaml"
    config.write_text(
        f"repo_id: {repo}\nrepo_type: dataset\nlocal_dir: {tmp_path / 'from_file'}\ninclude: ['card/*']\n"
    )
    result = hub_cli(["download", "--config", str(config), "--local-dir", str(tmp_path / "from_flag")], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()) == tmp_path / "from_flag" and not (tmp_path / "from_file").exists()
    assert sorted(digests(tmp_path / "from_flag")) == ["card/README.md"]


def test_one_hub_error_handler_names_the_action_and_the_repo():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from nli_cot_hub.config import RunFailed
    from nli_cot_hub.hub_transfer import hub_errors

    def response(status: int):
        return httpx2.Response(status, request=httpx2.Request("GET", "http://127.0.0.1/api/models/me/x"))

    with pytest.raises(RunFailed, match=r"^pushing the card failed: model repo 'me/x' at .* not found"):
        with hub_errors("pushing the card", "me/x", "model"):
            raise RepositoryNotFoundError("404 Client Error", response=response(404))
    with pytest.raises(RunFailed, match=r"^downloading failed: .*'me/x'.*HTTP 403: the token"):
        with hub_errors("downloading", "me/x", None, "dev"):
            raise HfHubHTTPError("403 Forbidden", response=response(403))
    with pytest.raises(RunFailed, match="^uploading needs a write token"):
        with hub_errors("uploading", "me/x", "model"):
            raise PermissionError("uploading needs a write token: set HF_TOKEN")
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with hub_errors("uploading", "me/x", "model"):
            raise ValueError("not a Hub error")
