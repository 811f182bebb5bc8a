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


def test_two_names_of_one_store_share_one_lock(tmp_path):
    path = tmp_path / "cot.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    with RecordStore(path) as store:
        store.append(record("a"))
        script = f"from nli_cot_hub.store import RecordStore\nRecordStore({str(link)!r})"
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert other.returncode != 0 and "StoreLockedError" in other.stderr
        with pytest.raises(StoreLockedError):
            RecordStore(link)
    with RecordStore(link) as store:  # writing through the link appends to the real file
        store.append(record("b"))
        store.drop({"a"})
    assert link.is_symlink() and [r.id for r in read_records(path)] == ["b"]


def test_a_store_refuses_another_stages_records_and_reads_old_ones(tmp_path):
    from nli_cot_hub.store import StoreStageError

    path = tmp_path / "cot.jsonl"
    with RecordStore(path, stage="generate") as store:
        store.append(record("a"))
    assert read_records(path)[0].stage == "generate"
    before = path.read_bytes()
    with pytest.raises(StoreStageError, match=r"line 1 was written by `nli-cot generate`"):
        RecordStore(path, stage="predict")
    assert path.read_bytes() == before
    with RecordStore(path, stage="generate") as store:  # the same stage resumes
        store.append(record("b"))
    # Records written before records carried a stage stay readable and resumable by any stage.
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(record("x").model_dump(exclude={"stage"})) + "\n")
    with RecordStore(old, stage="predict") as store:
        assert store.done_ids() == {"x"}
        store.append(record("y"))
    assert [r.stage for r in read_records(old)] == [None, "predict"]


def test_stored_errors_never_hold_a_secret_of_the_environment(tmp_path, monkeypatch):
    secret = "sk-live-abcdef123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    path = tmp_path / "cot.jsonl"
    with RecordStore(path) as store:
        store.append(
            record("a", status="failed", error=f"HTTP 401: invalid key {secret}", raw_output=f"echo {secret}")
        )
    assert secret not in path.read_text()
    assert read_records(path)[0].error == "HTTP 401: invalid key ***"


def test_a_folder_is_not_a_store(tmp_path):
    from nli_cot_hub.store import read_input_records

    with pytest.raises(DataError, match="is a folder"):
        RecordStore(tmp_path)
    with pytest.raises(DataError, match="is a folder"):
        read_records(tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        read_input_records(tmp_path / "absent.jsonl")


def test_records_written_before_the_constrained_field_still_load(tmp_path):
    """Stores from before `constrained` existed load with it unknown (None); new records keep it."""
    old = {
        "id": "a",
        "premise": "P.",
        "hypothesis": "H.",
        "label": 1,
        "thought_process": "t",
        "predicted_label": 1,
        "status": "ok",
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_records(path)
    assert record.constrained is None
    with RecordStore(path) as store:
        store.append(CoTRecord(id="b", premise="P.", hypothesis="H.", constrained=True))
    assert [r.constrained for r in read_records(path)] == [None, True]
