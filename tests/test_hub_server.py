"""The Hub-protocol test server, exercised through the real huggingface_hub, datasets, transformers and peft
clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx2
import pytest

pytestmark = pytest.mark.server


def unique(name: str) -> str:
    return f"tester/{name}-{uuid.uuid4().hex[:8]}"


def run_python(code: str, env: dict[str, str]) -> str:
    """Run `code` in a fresh interpreter (so HF_ENDPOINT is read at import, as in real use); return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_files_round_trip_with_regular_and_lfs_uploads(hub_server, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    repo = unique("files")
    url = api.create_repo(repo, repo_type="model")
    assert url == f"{hub_server.url}/{repo}"
    api.create_repo(repo, repo_type="model", exist_ok=True)  # the 409 is tolerated

    folder = tmp_path / "upload"
    (folder / "nested").mkdir(parents=True)
    (folder / "notes.txt").write_text("plain text, stored in git")
    weights = os.urandom(50_000)
    (folder / "nested" / "weights.safetensors").write_bytes(weights)
    api.upload_folder(folder_path=folder, repo_id=repo)
    api.upload_file(path_or_fileobj=b"second commit", path_in_repo="more.txt", repo_id=repo)

    assert api.list_repo_files(repo) == [".gitattributes", "more.txt", "nested/weights.safetensors", "notes.txt"]
    tree = {item.path: item for item in api.list_repo_tree(repo, recursive=True, expand=True)}
    assert tree["nested/weights.safetensors"].lfs.sha256 == __import__("hashlib").sha256(weights).hexdigest()
    assert tree["notes.txt"].lfs is None and tree["notes.txt"].last_commit is not None
    assert [i.path for i in api.list_repo_tree(repo)] == ["nested", ".gitattributes", "more.txt", "notes.txt"]

    info = api.model_info(repo, files_metadata=True)
    assert len(api.list_repo_commits(repo)) == 3  # initial + folder + file
    assert api.list_repo_refs(repo).branches[0].target_commit == info.sha

    assert open(hf_hub_download(repo, "notes.txt"), encoding="utf-8").read() == "plain text, stored in git"
    lfs_path = hf_hub_download(repo, "nested/weights.safetensors")
    assert open(lfs_path, "rb").read() == weights
    snapshot = snapshot_download(repo, cache_dir=tmp_path / "snap")
    assert sorted(os.listdir(snapshot)) == [".gitattributes", "more.txt", "nested", "notes.txt"]
    assert f"/snapshots/{info.sha}" in snapshot

    # An older revision still serves the old tree.
    first_commit = api.list_repo_commits(repo)[-2].commit_id
    assert "more.txt" not in api.list_repo_files(repo, revision=first_commit)


def test_resolve_headers_match_the_hub(hub_server):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    repo = unique("headers")
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"abc", path_in_repo="a.txt", repo_id=repo, repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"PAR1" + b"\0" * 100, path_in_repo="d/x.parquet", repo_id=repo, repo_type="dataset"
    )
    sha = api.dataset_info(repo).sha

    regular = httpx2.head(f"{hub_server.url}/datasets/{repo}/resolve/main/a.txt")
    assert regular.status_code == 200
    assert regular.headers["X-Repo-Commit"] == sha and regular.headers["Content-Length"] == "3"
    assert regular.headers["ETag"].strip('"') == "f2ba8f84ab5c1bce84a7b441cb1959cfc7093b7f"  # git hash-object

    lfs = httpx2.head(f"{hub_server.url}/datasets/{repo}/resolve/{sha}/d/x.parquet")
    assert lfs.status_code == 302 and lfs.headers["X-Linked-Size"] == "104"
    assert lfs.headers["X-Linked-Etag"].strip('"') == __import__("hashlib").sha256(b"PAR1" + b"\0" * 100).hexdigest()

    ranged = httpx2.get(
        f"{hub_server.url}/datasets/{repo}/resolve/main/d/x.parquet",
        headers={"Range": "bytes=0-3"},
        follow_redirects=True,
    )
    assert ranged.status_code == 206 and ranged.content == b"PAR1"

    codes = {
        "missing file": httpx2.head(f"{hub_server.url}/datasets/{repo}/resolve/main/nope.txt"),
        "missing revision": httpx2.head(f"{hub_server.url}/datasets/{repo}/resolve/v9/a.txt"),
        "missing repo": httpx2.head(f"{hub_server.url}/datasets/tester/absent/resolve/main/a.txt"),
    }
    assert {k: (r.status_code, r.headers.get("X-Error-Code")) for k, r in codes.items()} == {
        "missing file": (404, "EntryNotFound"),
        "missing revision": (404, "RevisionNotFound"),
        "missing repo": (404, "RepoNotFound"),
    }


def test_clients_raise_the_hub_errors(hub_server):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    repo = unique("errors")
    api.create_repo(repo, private=True)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "x.txt", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/never-created")
    anonymous = HfApi(endpoint=hub_server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):  # private repos are invisible without the token
        anonymous.model_info(repo)
    with pytest.raises(HfHubHTTPError) as denied:
        anonymous.create_repo(unique("denied"))
    assert denied.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(repo)
    assert conflict.value.response.status_code == 409


def test_hf_filesystem_lists_globs_and_reads(hub_server):
    from huggingface_hub import HfApi, HfFileSystem

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    repo = unique("fs")
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"0123456789", path_in_repo="cfg/train-0.parquet", repo_id=repo, repo_type="dataset"
    )
    fs = HfFileSystem(endpoint=hub_server.url, token=hub_server.token)
    assert fs.glob(f"datasets/{repo}/cfg/*.parquet") == [f"datasets/{repo}/cfg/train-0.parquet"]
    assert fs.info(f"datasets/{repo}/cfg/train-0.parquet")["size"] == 10
    with fs.open(f"datasets/{repo}/cfg/train-0.parquet", "rb", block_size=4) as handle:
        handle.seek(3)
        assert handle.read(4) == b"3456"


def test_datasets_push_to_hub_and_load_dataset_by_config(hub_server, tmp_path):
    from datasets import Dataset, DatasetDict, load_dataset

    repo = unique("nli")
    first = DatasetDict(
        {
            "train": Dataset.from_dict({"premise": ["p1", "p2"], "label": [1, 0]}),
            "test": Dataset.from_dict({"premise": ["p3"], "label": [1]}),
        }
    )
    second = DatasetDict({"train": Dataset.from_dict({"premise": ["q"], "label": [0]})})
    first.push_to_hub(repo, config_name="first")
    second.push_to_hub(repo, config_name="second", private=True)

    in_process = load_dataset(repo, "second", cache_dir=str(tmp_path / "ds"))
    assert in_process["train"].to_dict() == {"premise": ["q"], "label": [0]}

    code = f"""
import json
from datasets import load_dataset
loaded = load_dataset({repo!r}, "first")
print(json.dumps({{split: loaded[split].to_dict() for split in loaded}}))
"""
    out = run_python(code, hub_server.env(tmp_path / "cache"))
    assert json.loads(out.strip().splitlines()[-1]) == {split: first[split].to_dict() for split in first}


@pytest.mark.slow
def test_transformers_and_peft_push_and_load(hub_server, tmp_path, embedded_model_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = LlamaForCausalLM(config)
    parameter_count = sum(p.numel() for p in model.parameters())
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    repo = unique("tiny-llama")
    model.push_to_hub(repo)
    tokenizer.push_to_hub(repo)

    loaded = AutoModelForCausalLM.from_pretrained(repo)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert (
        AutoTokenizer.from_pretrained(repo)("premise and hypothesis")["input_ids"]
        == tokenizer("premise and hypothesis")["input_ids"]
    )

    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_repo = unique("tiny-adapter")
    lora.push_to_hub(adapter_repo)
    restored = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(repo), adapter_repo)
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(lora(input_ids=ids).logits, restored(input_ids=ids).logits)

    code = f"""
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({repo!r})
print(sum(p.numel() for p in model.parameters()))
"""
    out = run_python(code, hub_server.env(tmp_path / "cache"))
    assert int(out.strip().splitlines()[-1]) == parameter_count


def test_evaluate_loads_a_metric_from_a_space(hub_server, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    space = api.create_repo(unique("agreement"), repo_type="space", space_sdk="gradio").repo_id
    name = space.split("/")[1]
    script = (
        "import datasets\nimport evaluate\n\n\n"
        "class Agreement(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        return evaluate.MetricInfo(description='share of equal labels', citation='', inputs_description='',\n"
        "            features=datasets.Features({'predictions': datasets.Value('int64'),\n"
        "                                        'references': datasets.Value('int64')}))\n\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'agreement': sum(p == r for p, r in zip(predictions, references)) / len(references)}\n"
    )
    api.upload_file(path_or_fileobj=script.encode(), path_in_repo=f"{name}.py", repo_id=space, repo_type="space")
    code = f"""
import evaluate
print(evaluate.load({space!r}).compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 0])["agreement"])
"""
    out = run_python(code, hub_server.env(tmp_path / "cache"))
    assert float(out.strip().splitlines()[-1]) == 0.5
