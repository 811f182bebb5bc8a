"""Append-only JSONL store of :class:`CoTRecord`: one record per line, durable, resumable.

Guarantees, which every stage that writes records (generate, reflect, judge, predict) relies on:

* each ``append`` writes one whole line with a single ``write`` and then ``fsync``\\ s, so a crash
  (even ``kill -9``) loses at most the requests still in flight, never a finished record;
* on open, a torn last line (a crash mid-write) is detected and cut away; any earlier line that
  does not parse is an error naming the file and line, because it was not written by us;
* an id is never written twice (``DuplicateRecordError``); ``done_ids()`` tells a restart what to skip;
* one writer at a time: opening takes an exclusive ``flock`` on ``<path>.lock`` beside the real
  file (links resolved, so two names of one file share one lock);
* one stage per store: a store opened for a stage (``RecordStore(path, stage="predict")``) refuses
  a file holding another stage's records (``StoreStageError``) and stamps its own records with it;
* errors stored in records never hold a secret of the environment (:func:`nli_cot_hub.redact.redact`).

Failed pairs are stored too (``status="failed"`` with ``error``), so nothing silently disappears;
``drop(ids)`` rewrites the file atomically without them when they are to be retried.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from nli_cot_hub.data import DataError
from nli_cot_hub.records import CoTRecord
from nli_cot_hub.redact import redact


class DuplicateRecordError(ValueError):
    """A record with this id is already in the store."""


class StoreLockedError(RuntimeError):
    """Another process is writing this store."""


class StoreStageError(DataError):
    """The store holds records another stage wrote: appending would mix two kinds of output."""


def _parse_line(path: Path, number: int, line: bytes) -> CoTRecord:
    try:
        return CoTRecord.model_validate_json(line)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        raise DataError(f"{path}: line {number}: field {field}: {first['msg']}") from None


def read_records(path: str | Path) -> list[CoTRecord]:
    """Read a store without opening it for writing (a torn last line is skipped, not cut)."""
    path = Path(path)
    records, _, _ = _scan(path)
    return records


def read_input_records(path: str | Path) -> list[CoTRecord]:
    """The records of a store a command takes as input: a missing file is an error, not an empty store."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such store of records")
    return read_records(path)


def _scan(path: Path) -> tuple[list[CoTRecord], int, bool]:
    """Parse every whole line; return the records, the byte length of the good part, and
    whether a torn tail was found after it."""
    if not path.exists():
        return [], 0, False
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a JSONL store of records")
    data = path.read_bytes()
    records: list[CoTRecord] = []
    good_end = 0
    lines = data.split(b"\n")
    # After the last b"\n" comes either b"" (clean end) or the torn tail of an unfinished write.
    tail = lines.pop()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            records.append(_parse_line(path, number, line))
        good_end += len(line) + 1
    # A complete record that only lacks its newline counts as torn too: the writer died before
    # the line was finished, and its request is simply made again.
    torn = bool(tail)
    return records, good_end, torn


class RecordStore:
    """The JSONL file at ``path``, opened for appending.

    Use as a context manager (or call ``close``) so the writer lock is released.
    """

    def __init__(self, path: str | Path, stage: str | None = None):
        self.path = Path(path)
        self.stage = stage
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a folder; give a .jsonl file path for the records")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.resolve()  # the real file behind any link: lock, read and write it
        self._lock_handle = open(self._file.with_name(self._file.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise StoreLockedError(f"{self.path}: another process is writing this store") from None
        try:
            self._open_file()
        except BaseException:
            self._release_lock()
            raise

    def _open_file(self) -> None:
        records, good_end, torn = _scan(self._file)
        self.torn_bytes = 0
        self._records: dict[str, CoTRecord] = {}
        for number, record in enumerate(records, start=1):
            if record.id in self._records:
                raise DataError(f"{self.path}: line {number}: field id: {record.id!r} appears twice")
            if self.stage and record.stage and record.stage != self.stage:
                raise StoreStageError(
                    f"{self.path}: line {number} was written by `nli-cot {record.stage}`; `nli-cot {self.stage}` "
                    f"does not mix its records into that store: choose another output path"
                )
            self._records[record.id] = record
        if torn:
            self.torn_bytes = self._file.stat().st_size - good_end
            os.truncate(self._file, good_end)
        self._fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _release_lock(self) -> None:
        fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
        self._lock_handle.close()

    # ------------------------------------------------------------ reading
    def done_ids(self) -> set[str]:
        return set(self._records)

    def failed_ids(self) -> set[str]:
        return {key for key, record in self._records.items() if record.status == "failed"}

    def records(self) -> list[CoTRecord]:
        return list(self._records.values())

    def __iter__(self) -> Iterator[CoTRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def get(self, record_id: str) -> CoTRecord | None:
        return self._records.get(record_id)

    # ------------------------------------------------------------ writing
    def append(self, record: CoTRecord) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[CoTRecord]) -> None:
        """Write records as whole lines in one ``write`` and ``fsync`` once."""
        batch = list(records)
        ids = [record.id for record in batch]
        clashes = [key for key in ids if key in self._records] + [k for k in set(ids) if ids.count(k) > 1]
        if clashes:
            raise DuplicateRecordError(f"{self.path}: id {clashes[0]!r} is already stored")
        if not batch:
            return
        batch = [self._stamped(record) for record in batch]
        payload = "".join(record.model_dump_json() + "\n" for record in batch).encode("utf-8")
        written = os.write(self._fd, payload)
        while written < len(payload):  # a short write on a regular file is rare but legal
            written += os.write(self._fd, payload[written:])
        os.fsync(self._fd)
        for record in batch:
            self._records[record.id] = record

    def _stamped(self, record: CoTRecord) -> CoTRecord:
        update = {}
        if self.stage and record.stage != self.stage:
            update["stage"] = self.stage
        if record.error and redact(record.error) != record.error:
            update["error"] = redact(record.error)
        if record.raw_output and redact(record.raw_output) != record.raw_output:
            update["raw_output"] = redact(record.raw_output)
        return record.model_copy(update=update) if update else record

    def drop(self, ids: Iterable[str]) -> int:
        """Remove records (e.g. failed ones to retry) by atomically rewriting the file."""
        doomed = set(ids) & set(self._records)
        if not doomed:
            return 0
        kept = [record for key, record in self._records.items() if key not in doomed]
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=self._file.parent, prefix=f".{self._file.name}.", delete=False
        )
        try:
            with handle:
                for record in kept:
                    handle.write(record.model_dump_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.close(self._fd)
            os.replace(handle.name, self._file)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        finally:
            self._fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_dir(self._file.parent)
        self._records = {record.id: record for record in kept}
        return len(doomed)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._release_lock()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def summarize(records: Iterable[CoTRecord]) -> dict:
    """Counts by status and source, and accuracy of predictions against gold labels."""
    by_status: dict[str, int] = {}
    by_source: dict[str, int] = {}
    judged = correct = 0
    for record in records:
        by_status[record.status] = by_status.get(record.status, 0) + 1
        by_source[record.source] = by_source.get(record.source, 0) + 1
        if record.correct is not None:
            judged += 1
            correct += record.correct
    return {
        "records": sum(by_status.values()),
        "by_status": by_status,
        "by_source": by_source,
        "labelled_predictions": judged,
        "accuracy": round(correct / judged, 4) if judged else None,
    }
