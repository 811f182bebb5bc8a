"""Run the README's offline commands as written, in a scratch checkout, once per test session.

Convention (documented in README.md, "Tests"): an HTML comment right before a fenced code block marks it.

* ``<!-- docs-test -->``: every command of the block runs, in README order, and must exit 0;
* ``<!-- docs-test: demo -->``: the same, for the demo block; ``tests/test_demo.py`` inspects what it leaves;
* no mark: real use (API keys, a GPU, the real Hub, servers you start) or ``make test`` itself. Those
  ``nli-cot`` lines are still parsed against the real CLI, so a renamed option fails the docs test.

The scratch checkout is a folder of links to the repository's tracked top-level entries (and ``.venv``) with
``../shared/data`` beside it, so relative paths in the README resolve as in a clone and outputs land in the
scratch folder, never in the working tree.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = re.compile(r"<!--\s*docs-test(?::\s*(?P<kind>[\w-]+))?\s*-->\s*\n```[\w-]*\n(?P<body>.*?)```", re.S)
FENCE = re.compile(r"```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.S)
README_SCRATCH = "/tmp/nli-cot"
# Outputs of earlier local runs, never linked into the scratch checkout.
NOT_LINKED = {".git", "build", "demo_output", "outputs", "evaluation", ".pytest_cache", ".hypothesis"}
COMMAND_TIMEOUT_S = 1800  # the quick demo takes ~2-3 min on 2 idle cores; much longer on a loaded machine


@dataclass
class Block:
    index: int
    line: int
    kind: str  # "run" or "demo"
    commands: list[str]

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def block_commands(body: str) -> list[str]:
    """Shell commands of a code block: backslash continuations joined, blank and comment-only lines dropped."""
    commands, current = [], ""
    for raw in body.splitlines():
        line = raw.rstrip() if not current else raw.strip()
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        line = current + line
        current = ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def marked_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for number, match in enumerate(MARK.finditer(text)):
        kind = match.group("kind") or "run"
        line = text.count("\n", 0, match.start("body"))  # the fence line, 1-based
        blocks.append(Block(number, line, "demo" if kind == "demo" else "run", block_commands(match.group("body"))))
    return blocks


def unmarked_cli_commands(text: str | None = None) -> list[tuple[int, str]]:
    """(line, command) of every ``nli-cot`` command in shell blocks the docs test does not run."""
    text = README.read_text(encoding="utf-8") if text is None else text
    marked = {m.start("body") for m in MARK.finditer(text)}
    found = []
    for match in FENCE.finditer(text):
        if match.start("body") in marked or match.group("lang") not in ("bash", "sh", ""):
            continue
        line = text.count("\n", 0, match.start("body"))
        found += [(line, command) for command in block_commands(match.group("body")) if command.startswith("nli-cot ")]
    return found


@dataclass
class CommandResult:
    command: str
    returncode: int
    output: str


@dataclass
class ReadmeRun:
    """A scratch checkout where the marked blocks run in README order, each at most once."""

    root: Path
    blocks: list[Block]
    results: dict[int, list[CommandResult]] = field(default_factory=dict)

    @property
    def checkout(self) -> Path:
        return self.root / "repo"

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}

    def shell_command(self, command: str) -> str:
        # `make` targets run as written; only the install step is taken as done: this test runs inside that
        # installed .venv (CI's `make test` has just built it), and reinstalling from a scratch folder of
        # links would point the editable install at the scratch folder.
        words = shlex.split(command)
        if words and words[0] == "make":
            return shlex.join(["make", "-o", ".venv/.installed", *words[1:]])
        return command

    def run(self, block: Block) -> list[CommandResult]:
        for earlier in self.blocks[: block.index]:  # later blocks use what earlier ones built
            if earlier.index not in self.results:
                self._run(earlier)
        if block.index not in self.results:
            self._run(block)
        return self.results[block.index]

    def _run(self, block: Block) -> None:
        results = []
        for command in block.commands:
            try:
                done = subprocess.run(
                    ["bash", "-c", self.shell_command(command)],
                    cwd=self.checkout,
                    env=self.env(),
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT_S,
                )
                results.append(CommandResult(command, done.returncode, done.stdout + done.stderr))
            except subprocess.TimeoutExpired as error:
                partial = "".join(
                    part.decode(errors="replace") if isinstance(part, bytes) else part
                    for part in (error.stdout, error.stderr)
                    if part
                )
                results.append(CommandResult(command, -1, f"timed out after {COMMAND_TIMEOUT_S} s\n{partial}"))
            if results[-1].returncode:
                break  # the rest of the block depends on this command
        self.results[block.index] = results

    def demo_block(self) -> Block:
        demos = [block for block in self.blocks if block.kind == "demo"]
        if len(demos) != 1:
            pytest.fail(f"README.md must mark exactly one block <!-- docs-test: demo -->, found {len(demos)}")
        return demos[0]


def tracked_top_level() -> set[str]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return {path.split("/", 1)[0] for path in listed.splitlines() if path}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: link what is there
        return {path.name for path in REPO.iterdir()}


def make_checkout(root: Path, shared_data: Path) -> Path:
    checkout = root / "repo"
    checkout.mkdir(parents=True)
    for name in sorted((tracked_top_level() | {".venv"}) - NOT_LINKED):
        if (REPO / name).exists():
            (checkout / name).symlink_to(REPO / name)
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(shared_data.resolve())
    return checkout


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory) -> ReadmeRun:
    import shutil

    from tests.conftest import SHARED_DATA

    # The README's examples write to /tmp/nli-cot; a store left there by an earlier run would be resumed
    # (its records kept as they were) instead of written by the code under test.
    shutil.rmtree(README_SCRATCH, ignore_errors=True)
    root = tmp_path_factory.mktemp("readme")
    make_checkout(root, SHARED_DATA)
    return ReadmeRun(root, marked_blocks())
