"""The card ledger against real SQLite and PostgreSQL: durable before the response, idempotent replay, row isolation,
database outages (a real connection cut by a TCP proxy), a deleted database file, an unwritable or full spool."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import String, cast, func, insert, select
from sqlalchemy.engine import make_url

from cds_service.errors import ServiceUnavailable
from cds_service.storage.database import create_database_engine
from cds_service.storage.ledger import CardLedger, IssuedCardRow, SilentCallRow, decode, encode
from cds_service.storage.migrate import upgrade
from cds_service.storage.models import IssuedCard, IssuedSuggestion, SilentCall
from cds_service.storage.spool import DEAD_LETTER, Spool
from tests.faults import TcpProxy

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def rows(n: int, **changes) -> list[IssuedCardRow]:
    base = dict(card_type="fbss-imaging", service_id="svc", hook="patient-view", hook_instance="hi",
                knowledge_version="v1", patient_hash="h" * 64, issued_at=NOW)
    base.update(changes)
    return [IssuedCardRow(card_uuid=str(uuid.uuid4()), suggestions=((str(uuid.uuid4()), "Order MRI"),), **base)
            for _ in range(n)]


def count(engine, model=IssuedCard) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def engine(database_url):
    engine = create_database_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_the_ledger_loses_nothing_on_close(engine, spool):
    ledger = CardLedger(engine, spool, flush_interval=5)
    ledger.record(rows(450))
    ledger.close()
    assert count(engine) == 450 and count(engine, IssuedSuggestion) == 450
    assert spool.segment_paths() == []  # written, so deleted


def test_rows_are_in_the_spool_before_record_returns(engine, spool):
    ledger = CardLedger(engine, spool, flush_interval=60)
    recorded = rows(3)
    ledger.record(recorded)
    [segment] = spool.segment_paths()
    assert decode(segment.read_bytes()) == recorded
    ledger.close()


def test_a_process_killed_before_its_writer_ran_leaves_rows_that_the_next_start_replays(engine, spool, tmp_path):
    ledger = CardLedger(engine, spool, flush_interval=60)
    ledger.record(rows(5))
    ledger.record(rows(7))
    os.close(spool._current.fd)  # what SIGKILL does to the process's files: the lock goes, the bytes stay
    spool._current = None
    assert count(engine) == 0
    restarted = CardLedger(engine, Spool(tmp_path / "spool"))
    restarted.replay()
    assert count(engine) == 12 and count(engine, IssuedSuggestion) == 12
    assert spool.segment_paths() == []


def silent_call(live: str = "fbss-imaging", silent: str = "fbss-imaging revision-referral") -> SilentCallRow:
    return SilentCallRow(call_uuid=str(uuid.uuid4()), service_id="svc", hook="patient-view", source="ehr",
                         evaluated_at=NOW, live_version="v1", silent_version="v2", live_card_types=live,
                         silent_card_types=silent)


def test_a_silent_evaluation_s_rows_survive_a_crash_and_are_replayed(engine, spool, tmp_path):
    """A silent call's line (its cards marked silent and the comparison row) reads back as written, and a spool
    left by a killed process lands whole: nothing set aside as a dead letter."""
    ledger = CardLedger(engine, spool, flush_interval=60)
    recorded = [*rows(2, silent=True, knowledge_version="v2"), silent_call()]
    ledger.record(recorded)
    [segment] = spool.segment_paths()
    assert decode(segment.read_bytes()) == recorded
    os.close(spool._current.fd)  # SIGKILL
    spool._current = None
    restarted = CardLedger(engine, Spool(tmp_path / "spool"))
    restarted.replay()
    assert count(engine) == 2 and count(engine, SilentCall) == 1
    with engine.connect() as connection:
        assert set(connection.execute(select(IssuedCard.silent)).scalars()) == {True}
    assert not (tmp_path / "spool" / DEAD_LETTER).exists()


def test_a_line_written_before_silent_mode_still_reads(engine, spool):
    """Spool lines of the previous version (twelve fields a card, no silent calls) replay as live cards."""
    [row] = rows(1)
    old = encode([row]).replace(b",false]]", b"]]")
    assert old != encode([row])
    assert decode(old) == [row]


def test_a_segment_held_by_a_live_process_is_not_replayed_by_another(engine, spool, tmp_path):
    ledger = CardLedger(engine, spool, flush_interval=60)
    ledger.record(rows(4))
    other = CardLedger(engine, Spool(tmp_path / "spool"))
    other.replay()
    assert count(engine) == 0  # still the live writer's to write
    ledger.flush()
    assert count(engine) == 4
    ledger.close()


def test_replaying_rows_already_stored_duplicates_nothing(engine, spool, tmp_path):
    recorded = rows(6)
    ledger = CardLedger(engine, spool, flush_interval=60)
    ledger.record(recorded)
    ledger.flush()
    (tmp_path / "spool").mkdir(exist_ok=True)
    (tmp_path / "spool" / f"ledger-1-{time.time_ns()}.jsonl").write_bytes(encode(recorded) * 2)
    ledger.replay()
    assert count(engine) == 6 and count(engine, IssuedSuggestion) == 6
    ledger.close()


def test_a_row_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_lands(engine, spool):
    ledger = CardLedger(engine, spool, flush_interval=60)
    good = rows(49)
    bad = rows(1, issued_at=None)  # NOT NULL, on both databases
    ledger.record(good[:20] + bad + good[20:])
    ledger.flush()
    assert count(engine) == 49
    [letter] = (spool.folder / DEAD_LETTER).read_text().splitlines()
    assert bad[0].card_uuid in letter and "IntegrityError" in letter
    assert spool.segment_paths() == []
    ledger.close()


def test_a_nul_in_text_is_set_aside_alone_on_postgresql(postgres_url, spool):
    engine = create_database_engine(postgres_url)
    upgrade(engine)
    ledger = CardLedger(engine, spool, flush_interval=60)
    # A row built past the request path's cleaning (storable): the database still refuses only that row.
    ledger.record(rows(10) + rows(1, hook_instance="a\x00b") + rows(10))
    ledger.flush()
    assert count(engine) == 20
    assert "DataError" in (spool.folder / DEAD_LETTER).read_text()
    ledger.close()
    engine.dispose()


def test_the_ledger_stores_rows_as_sqlalchemy_does(engine, spool):
    # The writer bypasses SQLAlchemy's per-row parameter processing (BulkInsert); what it stores must be what an ORM
    # insert stores, to the character, or reports comparing dates would go wrong on SQLite.
    issued = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    columns = dict(card_type="fbss-imaging", service_id="svc", hook="patient-view", hook_instance="hi",
                   knowledge_version="v1", patient_hash="h" * 64, issued_at=issued)
    with engine.begin() as connection:
        connection.execute(insert(IssuedCard), [{"card_uuid": "by-sqlalchemy", **columns}])
        connection.execute(insert(IssuedSuggestion), [{"suggestion_uuid": "s0", "card_uuid": "by-sqlalchemy",
                                                        "label": "Order MRI"}])
    ledger = CardLedger(engine, spool, flush_interval=5)
    ledger.record([IssuedCardRow(card_uuid="by-ledger", suggestions=(("s1", "Order MRI" + "x" * 300),), **columns)])
    ledger.close()
    with engine.connect() as connection:
        stored = {row.card_uuid: row for row in connection.execute(
            select(IssuedCard.card_uuid, IssuedCard.card_type, IssuedCard.service_id, IssuedCard.hook,
                   IssuedCard.hook_instance, IssuedCard.knowledge_version, IssuedCard.patient_hash,
                   cast(IssuedCard.issued_at, String).label("issued_text"), IssuedCard.issued_at))}
        labels = dict(connection.execute(select(IssuedSuggestion.suggestion_uuid, IssuedSuggestion.label)).all())
    assert stored["by-ledger"][1:] == stored["by-sqlalchemy"][1:]
    assert stored["by-ledger"].issued_at.replace(tzinfo=UTC) == issued
    assert labels == {"s0": "Order MRI", "s1": ("Order MRI" + "x" * 300)[:255]}


@pytest.fixture
def cut_postgres(postgres_url):
    """The ledger's engine goes through a TCP proxy the test can cut: PostgreSQL unreachable, then back."""
    url = make_url(postgres_url)
    with TcpProxy(url.host, url.port or 5432) as proxy:
        engine = create_database_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False), timeout=2)
        upgrade(engine)
        yield proxy, engine
        engine.dispose()


def test_rows_recorded_while_the_database_is_cut_off_land_when_it_returns(cut_postgres, spool):
    proxy, engine = cut_postgres
    ledger = CardLedger(engine, spool, flush_interval=0.05, retry_interval=0.2)
    for _ in range(10):
        ledger.record(rows(3))
    assert wait_for(lambda: count(engine) == 30)
    proxy.cut()
    for _ in range(20):
        ledger.record(rows(3))  # answered meanwhile: the spool takes them
        time.sleep(0.02)
    assert wait_for(lambda: ledger.status()["backlog"])
    assert wait_for(lambda: ledger._pending == [])  # memory lets go: the spool holds them
    assert ledger.status()["lastWriteProblem"] == "database unreachable"
    proxy.restore()
    assert wait_for(lambda: count(engine) == 90)
    assert wait_for(lambda: not ledger.status()["backlog"] and spool.segment_paths() == [])
    ledger.close()
    assert count(engine) == 90 and count(engine, IssuedSuggestion) == 90


def test_a_deleted_sqlite_file_is_recreated_and_no_row_is_written_into_the_void(tmp_path):
    database = tmp_path / "instance" / "cds.sqlite3"
    engine = create_database_engine(f"sqlite:///{database}")
    upgrade(engine)
    spool = Spool(tmp_path / "instance" / "spool")
    ledger = CardLedger(engine, spool, flush_interval=60)
    ledger.record(rows(4))
    ledger.flush()
    shutil.rmtree(tmp_path / "instance")  # the whole instance folder, spool and database
    assert ledger.problem() is not None
    ledger.record(rows(6))
    ledger.flush()  # commits into the deleted file, notices, recreates, keeps the rows in the spool
    ledger.flush()
    assert database.exists()
    assert wait_for(lambda: (ledger.flush() or True) and count(engine) == 6, timeout=10)
    assert ledger.problem() is None
    ledger.close()
    engine.dispose()


def test_an_unwritable_spool_sends_the_rows_to_the_database_in_the_request(engine, tmp_path):
    blocked = tmp_path / "spool"
    blocked.write_text("a file where the spool folder should be")  # refuses mkdir and open, even for root
    ledger = CardLedger(engine, Spool(blocked), flush_interval=60)
    assert ledger.problem() is not None
    ledger.record(rows(3))
    assert count(engine) == 3
    ledger.close()


def test_a_full_spool_sends_the_rows_to_the_database_in_the_request(engine, spool):
    first = rows(1)
    ledger = CardLedger(engine, spool, flush_interval=60, max_spool_bytes=len(encode(first)))
    ledger.record(first)  # the spool takes the first call
    ledger.record(rows(2))  # and is then full
    assert count(engine) == 2
    assert "full" in ledger.problem()
    ledger.close()
    assert count(engine) == 3


def test_with_neither_spool_nor_database_the_cards_are_refused(cut_postgres, tmp_path):
    proxy, engine = cut_postgres
    blocked = tmp_path / "spool"
    blocked.write_text("not a folder")
    ledger = CardLedger(engine, Spool(blocked), flush_interval=60)
    proxy.cut()
    with pytest.raises(ServiceUnavailable):
        ledger.record(rows(2))
    proxy.restore()
    ledger.close()


def test_a_spool_folder_deleted_between_its_creation_and_the_segment_open_is_made_again(tmp_path, monkeypatch):
    """The instance folder deleted under load (rmtree racing the segment's rotation): the append tries once more."""
    spool = Spool(tmp_path / "spool")
    real_open = os.open
    calls = []

    def gone_once(path, *args, **kwargs):
        if not calls and str(path).endswith(".jsonl"):
            calls.append(path)
            shutil.rmtree(tmp_path / "spool")  # deleted right after its mkdir
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", gone_once)
    spool.append(b'{"x": 1}\n')
    assert calls  # the race happened
    [segment] = list((tmp_path / "spool").glob("ledger-*.jsonl"))
    assert segment.read_bytes() == b'{"x": 1}\n'


def test_a_spool_line_written_before_the_call_source_was_recorded_replays_as_ehr():
    old = b'[["c-1","fbss-imaging","svc","patient-view","hi","k","p","2026-11-01T00:00:00+00:00",[["s-1","MRI"]]]]\n'
    [row] = decode(old)
    assert row.source == "ehr" and row.suggestions == (("s-1", "MRI"),)
    [again] = decode(encode([dataclasses.replace(row, source="sandbox")]))
    assert again.source == "sandbox"
