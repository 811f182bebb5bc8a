"""A small Hugging Face Hub-protocol server, so the real clients can round-trip without the internet: the tests
use it, and so does ``nli-cot demo --hub-server``.

No open-source Hub server accepts uploads, so this module speaks just enough of the Hub's HTTP protocol for the
real ``huggingface_hub`` (``HfApi``, ``hf_hub_download``, ``snapshot_download``, ``HfFileSystem``), ``datasets``
(``push_to_hub`` / ``load_dataset``), ``transformers`` and ``peft`` (``push_to_hub`` / ``from_pretrained``) clients.
It listens on 127.0.0.1 (uvicorn in a background thread) and keeps repositories in memory with a linear commit
history per branch; file contents live content-addressed (by sha256) in a temporary folder.

What it implements, as the clients call it:

* ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
* ``GET /api/{type}s/{repo}[/revision/{rev}]``: repo info with ``sha`` and ``siblings``
* ``GET /api/{type}s/{repo}/refs``, ``GET /api/{type}s/{repo}/commits/{rev}``, ``POST .../branch/{name}``
* ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` (``recursive``, ``expand``) and ``POST .../paths-info/{rev}``
* ``POST /api/{type}s/{repo}/preupload/{rev}``: decides regular (base64 in the commit) or LFS per file
* ``POST {prefix}{repo}.git/info/lfs/objects/batch`` (basic transfer) plus the upload (PUT) and verify URLs it hands
  out; ``POST /api/{type}s/{repo}/commit/{rev}``: the NDJSON commit (header, file, lfsFile, deletedFile/Folder)
* ``HEAD``/``GET {prefix}{repo}/resolve/{rev}/{path}``: regular files answer 200 with ``ETag`` (git blob id),
  ``X-Repo-Commit`` and ``Content-Length``; LFS files answer 302 to the object URL with ``X-Linked-Etag`` (sha256)
  and ``X-Linked-Size``, as the Hub does; ``Range`` requests get 206. Missing things answer 404 with the Hub's
  ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``.

Writes need ``Authorization: Bearer <token>``; private repos are invisible (404 RepoNotFound) without it. Xet
storage is not spoken: clients must run with ``HF_HUB_DISABLE_XET=1`` (``HubServer.env()`` sets it), which makes
``huggingface_hub`` use the classic LFS upload path and plain HTTP downloads.

For a subprocess, pass ``env={**os.environ, **server.env()}``; the tests' fixtures (``tests/hub_server.py``) also
point the current process's libraries at it.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote

DEFAULT_TOKEN = "hf_local_test_token"
DEFAULT_USER = "tester"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The Hub stores these as LFS through the .gitattributes it creates with every repo; we use the same rule.
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gguf *.gz *.h5 *.joblib *.lz4 *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.png *.jpg *.pt *.pth *.rar *.safetensors *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents*"
).split()
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def wants_lfs(path: str, size: int, sample: bytes) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_SIZE_THRESHOLD or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


@dataclass(frozen=True)
class Entry:
    """One file in a commit's tree."""

    sha256: str
    size: int
    blob_id: str  # git blob id of what git would store: the content, or the LFS pointer
    lfs: bool


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        for refs in (self.branches, self.tags):
            for name in (revision, revision.removeprefix("refs/heads/"), revision.removeprefix("refs/tags/")):
                if name in refs:
                    return self.commits[refs[name]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            found = [c for sha, c in self.commits.items() if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None

    def history(self, commit: Commit) -> list[Commit]:
        chain = [commit]
        while chain[-1].parent:
            chain.append(self.commits[chain[-1].parent])
        return chain


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubState:
    """Repositories and content-addressed objects; every method is safe to call from several threads."""

    def __init__(self, root: Path, token: str, user: str):
        self.root, self.token, self.user = root, token, user
        self.objects = root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()

    # -- objects -------------------------------------------------------------------------------------------------
    def put_object(self, content: bytes) -> str:
        sha = hashlib.sha256(content).hexdigest()
        path = self.objects / sha
        if not path.exists():
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha

    def object_path(self, sha256: str) -> Path | None:
        path = self.objects / sha256
        return path if re.fullmatch(r"[0-9a-f]{64}", sha256) and path.exists() else None

    # -- repos ---------------------------------------------------------------------------------------------------
    def get_repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} ({repo_type}) not found")
        return repo

    def get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, None, "You already created this repo")
            repo = Repo(type=repo_type, id=repo_id, private=private, created_at=_now())
            self.repos[(repo_type, repo_id)] = repo
            attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
            self._commit(repo, None, "initial commit", "", {".gitattributes": self._regular_entry(attributes)})
            return repo

    def _regular_entry(self, content: bytes) -> Entry:
        return Entry(sha256=self.put_object(content), size=len(content), blob_id=git_blob_id(content), lfs=False)

    def _commit(self, repo: Repo, branch_head: Commit | None, title: str, message: str, files: dict) -> Commit:
        date = _now()
        digest = hashlib.sha1(
            json.dumps(
                [
                    branch_head.sha if branch_head else None,
                    title,
                    message,
                    date,
                    time.monotonic_ns(),
                    sorted((p, e.blob_id) for p, e in files.items()),
                ]
            ).encode()
        ).hexdigest()
        commit = Commit(digest, branch_head.sha if branch_head else None, title, message, date, files)
        repo.commits[digest] = commit
        repo.branches.setdefault("main", digest)
        return commit

    def apply_commit(self, repo: Repo, branch: str, operations: list[dict]) -> Commit:
        header = next((op["value"] for op in operations if op.get("key") == "header"), None)
        if header is None:
            raise HubError(400, None, "commit payload has no header line")
        with self.lock:
            branch = unquote(branch).removeprefix("refs/heads/")
            if branch not in repo.branches:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch} is not a branch")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and parent != head.sha:
                raise HubError(412, None, f"A commit has happened since {parent}; head is {head.sha}")
            files = dict(head.files)
            for op in operations:
                key, value = op.get("key"), op.get("value") or {}
                path = value.get("path", "").strip("/")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, None, f"unsupported encoding for {path}")
                    files[path] = self._regular_entry(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    sha, size = value["oid"], int(value["size"])
                    stored = self.object_path(sha)
                    if stored is None or stored.stat().st_size != size:
                        raise HubError(400, None, f"LFS object {sha} for {path} was never uploaded")
                    files[path] = Entry(sha, size, git_blob_id(lfs_pointer(sha, size)), lfs=True)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "EntryNotFound", f"{path} does not exist")
                elif key == "deletedFolder":
                    for name in [n for n in files if n.startswith(path + "/")]:
                        del files[name]
                elif key != "header":
                    raise HubError(400, None, f"unsupported commit operation {key!r}")
            commit = self._commit(repo, head, header.get("summary", ""), header.get("description", ""), files)
            repo.branches[branch] = commit.sha
            return commit


# -- HTTP layer ----------------------------------------------------------------------------------------------------


def _build_app(state: HubState):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {state.token}"

    def require_write(request: Request) -> None:
        if not authorized(request):
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def error(exc: HubError) -> Response:
        headers = {"X-Error-Message": exc.message}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    def handler(func):
        async def wrapped(request: Request) -> Response:
            try:
                return await func(request)
            except HubError as exc:
                return error(exc)

        return wrapped

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def cdn(request: Request) -> str:
        """LFS content is served from another host name, like the Hub's CDN, so clients take the metadata from the
        redirect itself and don't follow it on HEAD."""
        return f"http://localhost:{request.url.port}"

    def repo_of(request: Request) -> Repo:
        params = request.path_params
        if "types" in params:
            if params["types"] not in REPO_TYPES:
                raise HubError(404, None, f"unknown repo type {params['types']}")
            repo_type = REPO_TYPES[params["types"]]
        else:
            first = request.url.path.split("/")[1]
            repo_type = {"datasets": "dataset", "spaces": "space"}.get(first, "model")
        return state.get_repo(repo_type, f"{params['ns']}/{params['name']}", authorized(request))

    def file_json(path: str, entry: Entry, commit: Commit | None) -> dict:
        item = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = {
                "oid": entry.sha256,
                "size": entry.size,
                "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
            }
        if commit is not None:
            item["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
            item["securityFileStatus"] = {
                "status": "safe",
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None,
            }
        return item

    def folder_json(path: str, files: dict[str, Entry], commit: Commit | None) -> dict:
        inside = sorted((p, e.blob_id) for p, e in files.items() if p.startswith(path + "/"))
        item = {
            "type": "directory",
            "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(),
            "size": 0,
            "path": path,
        }
        if commit is not None:
            item["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
        return item

    def last_commit(repo: Repo, head: Commit, path: str) -> Commit:
        """The newest commit that changed `path` (a file or folder)."""
        history = repo.history(head)
        for newer, older in zip(history, history[1:]):

            def view(c: Commit):
                return {p: e.blob_id for p, e in c.files.items() if p == path or p.startswith(path + "/")}

            if view(newer) != view(older):
                return newer
        return history[-1]

    def folders_of(files: dict[str, Entry]) -> set[str]:
        return {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}

    def info_json(request: Request, repo: Repo, commit: Commit) -> dict:
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling = {"rfilename": path, "size": entry.size, "blobId": entry.blob_id}
            if entry.lfs:
                sibling["lfs"] = {
                    "size": entry.size,
                    "sha256": entry.sha256,
                    "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                }
            siblings.append(sibling)
        info = {
            "_id": hashlib.md5(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo.type == "model":
            info["modelId"] = repo.id
        return info

    # -- routes ------------------------------------------------------------------------------------------------
    @handler
    async def whoami(request: Request) -> Response:
        require_write(request)
        return JSONResponse(
            {
                "type": "user",
                "name": state.user,
                "fullname": state.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    @handler
    async def validate_yaml(request: Request) -> Response:
        import yaml

        content = (await request.json()).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
        if not match:
            return JSONResponse({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            return JSONResponse({"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}, status_code=400)
        if metadata is not None and not isinstance(metadata, dict):
            return JSONResponse(
                {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, status_code=400
            )
        return JSONResponse({"errors": [], "warnings": []})

    @handler
    async def create_repo(request: Request) -> Response:
        require_write(request)
        body = await request.json()
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, None, f"unknown repo type {repo_type}")
        repo_id = f"{body.get('organization') or state.user}/{body['name']}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        url = f"{base(request)}/{URL_PREFIX[repo_type]}{repo_id}"
        try:
            state.create_repo(repo_type, repo_id, private)
        except HubError as exc:  # the Hub's 409 names the existing repo, and `exist_ok=True` reads that url
            return JSONResponse(
                {"error": exc.message, "url": url}, status_code=exc.status, headers={"X-Error-Message": exc.message}
            )
        return JSONResponse({"url": url, "name": repo_id})

    @handler
    async def delete_repo(request: Request) -> Response:
        require_write(request)
        body = await request.json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or state.user}/{body['name']}"
        with state.lock:
            state.get_repo(repo_type, repo_id, True)
            del state.repos[(repo_type, repo_id)]
        return Response(status_code=200)

    @handler
    async def repo_info(request: Request) -> Response:
        repo = repo_of(request)
        commit = state.get_commit(repo, request.path_params.get("rev", "main"))
        return JSONResponse(info_json(request, repo, commit))

    @handler
    async def refs(request: Request) -> Response:
        repo = repo_of(request)

        def listing(refs: dict[str, str], kind: str) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(refs.items())]

        return JSONResponse(
            {
                "branches": listing(repo.branches, "heads"),
                "tags": listing(repo.tags, "tags"),
                "converts": [],
                "pullRequests": [],
            }
        )

    @handler
    async def commits(request: Request) -> Response:
        repo = repo_of(request)
        head = state.get_commit(repo, request.path_params["rev"])
        return JSONResponse(
            [
                {
                    "id": c.sha,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": state.user}],
                }
                for c in repo.history(head)
            ]
        )

    @handler
    async def create_branch(request: Request) -> Response:
        require_write(request)
        repo = repo_of(request)
        body = await request.json() if (await request.body()) else {}
        start = state.get_commit(repo, body.get("startingPoint") or "main")
        with state.lock:
            name = request.path_params["branch"]
            if name in repo.branches:
                raise HubError(409, None, f"Reference refs/heads/{name} already exists")
            repo.branches[name] = start.sha
        return Response(status_code=200)

    @handler
    async def create_tag(request: Request) -> Response:
        require_write(request)
        repo = repo_of(request)
        body = await request.json()
        commit = state.get_commit(repo, request.path_params["rev"])
        with state.lock:
            if body["tag"] in repo.tags:
                raise HubError(409, None, f"Tag {body['tag']} already exists")
            repo.tags[body["tag"]] = commit.sha
        return Response(status_code=200)

    @handler
    async def tree(request: Request) -> Response:
        repo = repo_of(request)
        commit = state.get_commit(repo, request.path_params["rev"])
        folder = (request.path_params.get("path") or "").strip("/")
        recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
        expand = request.query_params.get("expand", "false").lower() in ("1", "true")
        if folder and folder not in folders_of(commit.files):
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on {commit.sha}")
        prefix = folder + "/" if folder else ""
        items = []
        for name in sorted(folders_of(commit.files)):
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :]):
                items.append(folder_json(name, commit.files, last_commit(repo, commit, name) if expand else None))
        for name, entry in sorted(commit.files.items()):
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :]):
                items.append(file_json(name, entry, last_commit(repo, commit, name) if expand else None))
        return JSONResponse(items)

    @handler
    async def paths_info(request: Request) -> Response:
        repo = repo_of(request)
        commit = state.get_commit(repo, request.path_params["rev"])
        raw = (await request.body()).decode()
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(raw or "{}")
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:  # what huggingface_hub sends: a urlencoded form with repeated "paths"
            form = parse_qs(raw)
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() in ("1", "true")
        folders = folders_of(commit.files)
        items = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                items.append(file_json(path, commit.files[path], last_commit(repo, commit, path) if expand else None))
            elif path in folders:
                items.append(folder_json(path, commit.files, last_commit(repo, commit, path) if expand else None))
        return JSONResponse(items)

    @handler
    async def preupload(request: Request) -> Response:
        require_write(request)
        repo = repo_of(request)
        state.get_commit(repo, request.path_params["rev"])
        body = await request.json()
        files = []
        for item in body.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = "lfs" if wants_lfs(item["path"], int(item["size"]), sample) else "regular"
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False})
        return JSONResponse({"files": files, "commitOid": repo.resolve(request.path_params["rev"]).sha})

    @handler
    async def commit(request: Request) -> Response:
        require_write(request)
        repo = repo_of(request)
        if request.query_params.get("create_pr") in ("1", "true"):
            raise HubError(400, None, "pull requests are not supported by the test server")
        raw = (await request.body()).decode()
        if raw.lstrip().startswith("{") and "\n" not in raw.strip():
            body = json.loads(raw)  # the older single-JSON form
            operations = [
                {
                    "key": "header",
                    "value": {"summary": body.get("summary", ""), "description": body.get("description", "")},
                }
            ]
        else:
            operations = [json.loads(line) for line in raw.splitlines() if line.strip()]
        new = state.apply_commit(repo, request.path_params["rev"], operations)
        url = f"{base(request)}/{URL_PREFIX[repo.type]}{repo.id}/commit/{new.sha}"
        return JSONResponse({"success": True, "commitOid": new.sha, "commitUrl": url, "pullRequestUrl": None})

    @handler
    async def lfs_batch(request: Request) -> Response:
        repo_of(request)  # an unknown repo is refused before anything is read
        body = await request.json()
        operation = body.get("operation", "download")
        if operation == "upload":
            require_write(request)
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item: dict = {"oid": oid, "size": size, "authenticated": True}
            stored = state.object_path(oid)
            if operation == "upload" and stored is None:
                item["actions"] = {
                    "upload": {"href": f"{base(request)}/__lfs/upload/{oid}/{size}", "header": {}},
                    "verify": {"href": f"{base(request)}/__lfs/verify", "header": {}},
                }
            elif operation == "download":
                if stored is None:
                    item["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    item["actions"] = {"download": {"href": f"{cdn(request)}/__lfs/objects/{oid}", "header": {}}}
            objects.append(item)
        return JSONResponse(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, media_type="application/vnd.git-lfs+json"
        )

    @handler
    async def lfs_upload(request: Request) -> Response:
        oid, size = request.path_params["oid"], int(request.path_params["size"])
        content = await request.body()
        if len(content) != size or hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, None, f"uploaded content does not match oid {oid} / size {size}")
        state.put_object(content)
        return Response(status_code=200)

    @handler
    async def lfs_verify(request: Request) -> Response:
        body = await request.json()
        stored = state.object_path(body["oid"])
        if stored is None or stored.stat().st_size != int(body["size"]):
            raise HubError(404, None, f"object {body['oid']} not found")
        return JSONResponse({"success": True})

    def send_bytes(request: Request, path: Path, headers: dict[str, str]) -> Response:
        size = path.stat().st_size
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", "").strip())
        status, start, end = 200, 0, size - 1
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(size - int(match.group(2)), 0)
            if start >= size and size > 0:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(max(end - start + 1, 0))
        headers["Accept-Ranges"] = "bytes"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        with path.open("rb") as handle:
            handle.seek(start)
            content = handle.read(max(end - start + 1, 0))
        return Response(content, status_code=status, headers=headers, media_type="application/octet-stream")

    @handler
    async def lfs_object(request: Request) -> Response:
        path = state.object_path(request.path_params["oid"])
        if path is None:
            raise HubError(404, None, "object not found")
        return send_bytes(request, path, {"ETag": f'"{request.path_params["oid"]}"'})

    @handler
    async def resolve(request: Request) -> Response:
        repo = repo_of(request)
        commit = state.get_commit(repo, request.path_params["rev"])
        path = request.path_params["path"]  # Starlette has already percent-decoded it
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {commit.sha}")
        headers = {"X-Repo-Commit": commit.sha}
        if entry.lfs:
            headers.update(
                {
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(entry.size),
                    "ETag": f'"{entry.blob_id}"',
                    "Location": f"{cdn(request)}/__lfs/objects/{entry.sha256}",
                }
            )
            return Response(status_code=302, headers=headers)
        headers["ETag"] = f'"{entry.blob_id}"'
        return send_bytes(request, state.objects / entry.sha256, headers)

    api = "/api/{types}/{ns}/{name}"
    routes = [
        Route("/api/whoami-v2", whoami, methods=["GET"]),
        Route("/api/repos/create", create_repo, methods=["POST"]),
        Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
        Route("/api/repos/delete", delete_repo, methods=["DELETE"]),
        Route(api, repo_info, methods=["GET"]),
        Route(api + "/revision/{rev:path}", repo_info, methods=["GET"]),
        Route(api + "/refs", refs, methods=["GET"]),
        Route(api + "/commits/{rev:path}", commits, methods=["GET"]),
        Route(api + "/branch/{branch:path}", create_branch, methods=["POST"]),
        Route(api + "/tag/{rev:path}", create_tag, methods=["POST"]),
        Route(api + "/tree/{rev}", tree, methods=["GET"]),
        Route(api + "/tree/{rev}/{path:path}", tree, methods=["GET"]),
        Route(api + "/paths-info/{rev:path}", paths_info, methods=["POST"]),
        Route(api + "/preupload/{rev:path}", preupload, methods=["POST"]),
        Route(api + "/commit/{rev:path}", commit, methods=["POST"]),
        Route("/__lfs/upload/{oid}/{size:int}", lfs_upload, methods=["PUT"]),
        Route("/__lfs/verify", lfs_verify, methods=["POST"]),
        Route("/__lfs/objects/{oid}", lfs_object, methods=["GET", "HEAD"]),
    ]
    # Web-style URLs: models have no prefix, datasets and spaces do (the prefixed routes must come first).
    for prefix in ("/datasets", "/spaces", ""):
        routes += [
            Route(prefix + "/{ns}/{name}.git/info/lfs/objects/batch", lfs_batch, methods=["POST"]),
            Route(prefix + "/{ns}/{name}/resolve/{rev}/{path:path}", resolve, methods=["GET", "HEAD"]),
        ]
    return Starlette(routes=routes)


class HubServer:
    """A running Hub-protocol server: ``url``, ``token``, ``user`` and ``env()`` for clients."""

    def __init__(self, root: Path | None = None, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER):
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="hub_server_"))
        self.token, self.user = token, user
        self.state = HubState(self.root / "store", token, user)
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            _build_app(self.state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="hub-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test Hub server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def env(self, cache_dir: Path | str | None = None) -> dict[str, str]:
        """Environment variables that point a fresh process (CLI, subprocess) at this server."""
        env = {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
        }
        if cache_dir is not None:
            env["HF_HOME"] = str(cache_dir)
            env["HF_HUB_CACHE"] = str(Path(cache_dir) / "hub")
            env["HF_DATASETS_CACHE"] = str(Path(cache_dir) / "datasets")
        return env

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
