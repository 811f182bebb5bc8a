import json
import os
import subprocess
import sys
import textwrap

import pytest

from nli_cot_hub.data import DataError
from nli_cot_hub.records import CoTRecord
from nli_cot_hub.store import DuplicateRecordError, RecordStore, StoreLockedError, read_records


def record(key: str, **extra) -> CoTRecord:
    return CoTRecord(id=key, premise=f"premise {key}", hypothesis=f"hypothesis {key}", label=1, **extra)


def test_append_survives_reopen_and_skips_done_ids(tmp_path):
    path = tmp_path / "cot.jsonl"
    with RecordStore(path) as store:
        store.append(record("a", thought_process="t", predicted_label=1))
        store.append_many([record("b"), record("c", status="failed", error="HTTP 500 after 6 tries")])
    with RecordStore(path) as store:
        assert store.done_ids() == {"a", "b", "c"}
        assert store.failed_ids() == {"c"}
        assert store.get("a").thought_process == "t"
        assert store.get("c").error == "HTTP 500 after 6 tries"
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_duplicate_id_is_refused_and_file_unchanged(tmp_path):
    path = tmp_path / "cot.jsonl"
    with RecordStore(path) as store:
        store.append(record("a"))
        before = path.read_bytes()
        with pytest.raises(DuplicateRecordError):
            store.append(record("a"))
        with pytest.raises(DuplicateRecordError):
            store.append_many([record("x"), record("x")])
        assert path.read_bytes() == before
        assert len(store) == 1


@pytest.mark.parametrize("tail", [b'{"id": "z", "premise": "p', b'{"id"', b"  ", None])
def test_torn_last_line_is_cut_away(tmp_path, tail):
    path = tmp_path / "cot.jsonl"
    with RecordStore(path) as store:
        store.append_many([record("a"), record("b")])
    good = path.read_bytes()
    if tail is None:  # a complete record whose newline never made it to disk
        tail = record("z").model_dump_json().encode()
    path.write_bytes(good + tail)
    assert [r.id for r in read_records(path)] == ["a", "b"]
    with RecordStore(path) as store:
        assert store.torn_bytes == len(tail)
        assert store.done_ids() == {"a", "b"}
        store.append(record("z"))
    assert path.read_bytes() == good + record_line(path, "z")
    assert [r.id for r in read_records(path)] == ["a", "b", "z"]


def record_line(path, key):
    for line in path.read_bytes().splitlines(keepends=True):
        if json.loads(line)["id"] == key:
            return line
    raise AssertionError(key)


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "cot.jsonl"
    path.write_text(record("a").model_dump_json() + "\n" + '{"id": 3}\n' + record("b").model_dump_json() + "\n")
    with pytest.raises(DataError, match=r"cot.jsonl: line 2: field"):
        RecordStore(path)


def test_duplicate_ids_already_in_file_are_an_error(tmp_path):
    path = tmp_path / "cot.jsonl"
    line = record("a").model_dump_json() + "\n"
    path.write_text(line + line)
    with pytest.raises(DataError, match="line 2: field id: 'a' appears twice"):
        RecordStore(path)


def test_drop_rewrites_without_the_given_ids(tmp_path):
    path = tmp_path / "cot.jsonl"
    with RecordStore(path) as store:
        store.append_many([record("a"), record("b", status="failed", error="x"), record("c")])
        assert store.drop(store.failed_ids()) == 1
        store.append(record("b"))
    assert [r.id for r in read_records(path)] == ["a", "c", "b"]
    assert all(r.status == "ok" for r in read_records(path))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "cot.jsonl"
    with RecordStore(path):
        script = textwrap.dedent(f"""
            from nli_cot_hub.store import RecordStore, StoreLockedError
            try:
                RecordStore({str(path)!r})
            except StoreLockedError:
                raise SystemExit(3)
        """)
        assert subprocess.run([sys.executable, "-c", script]).returncode == 3
        with pytest.raises(StoreLockedError):
            RecordStore(path)
    with RecordStore(path) as store:  # released on close
        assert len(store) == 0


def test_each_append_is_on_disk_before_it_returns(tmp_path):
    path = tmp_path / "cot.jsonl"
    store = RecordStore(path)
    store.append(record("a"))
    # Read through a separate descriptor while the store is still open: nothing is buffered.
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 1 << 20).endswith(b"\n")
    finally:
        os.close(fd)
    store.close()


def test_records_written_before_the_constrained_field_still_load(tmp_path):
    """Stores from before `constrained` existed load with it unknown (None); new records keep it."""
    old = {"id": "a", "premise": "P.", "hypothesis": "H.", "label": 1, "thought_process": "t", "predicted_label": 1,
           "status": "ok", "created_at": "2025-01-01T00:00:00+00:00"}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_records(path)
    assert record.constrained is None
    with RecordStore(path) as store:
        store.append(CoTRecord(id="b", premise="P.", hypothesis="H.", constrained=True))
    assert [r.constrained for r in read_records(path)] == [None, True]
