"""The open visits on disk (a row per visit and a log of changes): whatever the table does,
a restart reads back exactly the table in memory, and the log is folded down to its bound."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.ingest import visit_changes
from appliance.ingest.visit_state import Visit
from appliance.ingest.visits import VisitTable
from appliance.models import Event, EventKind
from storage import Store

# after the wall clock: the table judges "recently touched" by it, and these visits go idle
_DAY0 = time.time() // 86400 * 86400 + 86400
_TIMEOUT = 1800


class _Refused(Exception):
    """A transaction that fails after the table's writes (it must leave no trace)."""


def _interner():
    ids: dict[str, int] = {"": 0}
    return lambda text: ids.setdefault(text, len(ids))


def _events(rng_events, clock: float) -> list[Event]:
    return [
        Event(kind=EventKind.PAGEVIEW if kind else EventKind.CUSTOM, site_id=site, visitor_id=visitor,
              timestamp=clock + offset, name="pageview" if kind else "Signup", path=f"/{offset % 3}",
              referrer="https://example.org/" * (offset % 2))
        for site, visitor, offset, kind in rng_events
    ]


_batch = st.lists(st.tuples(st.integers(1, 2), st.integers(1, 40), st.integers(0, 600), st.booleans()),
                  min_size=3, max_size=30)
_operation = st.one_of(
    st.tuples(st.just("batch"), _batch, st.booleans()),
    st.tuples(st.just("expire"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("forget"), st.tuples(st.integers(1, 2), st.integers(1, 40)), st.booleans()),
    st.tuples(st.just("replace"), st.lists(st.integers(1, 40), max_size=5), st.booleans()),
    st.tuples(st.just("idle"), st.integers(0, 4000), st.booleans()),
    st.tuples(st.just("delete_site"), st.just(2), st.just(False)),
)


def _write(store: Store, table: VisitTable, fn, refuse: bool) -> None:
    def transaction(txn):
        fn(txn)
        if refuse:
            raise _Refused
    try:
        store.write(transaction, durable=False)
    except _Refused:
        table.rolled_back()
        return
    table.committed()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(_operation, min_size=1, max_size=25), limit=st.sampled_from([1, 600, 3000, 1 << 20]))
def test_a_restart_reads_back_the_table_in_memory(tmp_path_factory, operations, limit):
    store = Store(tmp_path_factory.mktemp("visit-changes"))
    try:
        table = VisitTable(store, _TIMEOUT, max_open=12, fresh=True, log_bytes=limit)
        intern, clock = _interner(), _DAY0
        for kind, argument, refuse in operations:
            clock += 400
            if kind == "batch":
                events = _events(argument, clock)
                _write(store, table, lambda txn, events=events, clock=clock: (
                    table.apply(txn, events, {1: "UTC", 2: "UTC"}, defaultdict(int), intern),
                    table.close_in(txn, clock + 600, idle=True)), refuse)
            elif kind == "expire":
                table.expire(clock + argument * 200, keep=argument)
            elif kind == "forget":
                _write(store, table, lambda txn, key=argument: table.forget_visitor(txn, *key), refuse)
            elif kind == "replace":
                visits = {visitor: Visit(start=clock, last=clock + visitor, day=20_000, pageviews=visitor % 3,
                                         interactive=False, hint="", entry=[0] * 3, exit_path=0, carried=[])
                          for visitor in argument}
                _write(store, table, lambda txn, visits=visits: table.replace(txn, 1, visits), refuse)
            elif kind == "idle":
                table.idle.listed_at = 0.0
                table.close_idle(clock + argument)
            else:
                store.write(lambda txn, site=argument: table.delete_site(txn, site))
            assert VisitTable(store, _TIMEOUT, log_bytes=limit)._open == table._open
    finally:
        store.close()


def test_the_log_is_folded_into_the_rows_down_to_its_bound(tmp_path):
    """Past its bound the oldest log transactions go, their visits' latest state in rows."""
    store = Store(tmp_path / "store")
    try:
        table = VisitTable(store, _TIMEOUT, fresh=True, log_bytes=4_000)
        intern = _interner()
        for step in range(40):
            clock = _DAY0 + step * 60
            events = _events([(1, visitor, 0, True) for visitor in range(step * 5, step * 5 + 30)], clock)
            store.write(lambda txn, events=events, clock=clock: (
                table.apply(txn, events, {1: "UTC"}, defaultdict(int), intern), table.close_in(txn, clock)))
            table.committed()
        changes = table._changes
        assert changes.log_bytes <= 4_000 + max(size for _, _, size in changes._entries.values())
        with store.read() as txn:
            rows = txn.stat(store.db(b"visits"))["entries"]
            log_rows = txn.stat(store.db(b"visit_changes"))["entries"]
        assert rows > 0 and log_rows > 0  # some visits in rows, the latest changes in the log
        assert rows < len(table)  # the visits the log holds last are not in rows
        assert VisitTable(store, _TIMEOUT)._open == table._open
    finally:
        store.close()


def test_a_log_row_stays_within_a_page(tmp_path):
    """A large transaction's changes are rows of at most ~1.8 KB (no overflow pages), read
    back in order."""
    store = Store(tmp_path / "store")
    try:
        table = VisitTable(store, _TIMEOUT, fresh=True)
        events = _events([(1, visitor, 0, True) for visitor in range(1, 2001)], _DAY0)
        store.write(lambda txn: table.apply(txn, events, {1: "UTC"}, defaultdict(int), _interner()))
        table.committed()
        with store.read() as txn:
            sizes = [len(value) for _, value in txn.cursor(db=store.db(b"visit_changes"))]
            assert txn.stat(store.db(b"visit_changes"))["overflow_pages"] == 0
        assert len(sizes) > 50 and max(sizes) <= 1_800 + 200
        assert VisitTable(store, _TIMEOUT)._open == table._open
    finally:
        store.close()


@pytest.mark.parametrize("folds", [0, 1])
def test_rows_written_before_the_log_existed_are_read(tmp_path, folds):
    """A data dir from before the log: its visits are rows only, read as they were."""
    store = Store(tmp_path / "store")
    try:
        visit = Visit(start=_DAY0, last=_DAY0 + 5, day=20_000, pageviews=1, interactive=False, hint="",
                      entry=[0, 3], exit_path=3, carried=[])
        encode = visit_changes.msgspec.msgpack.Encoder().encode
        store.write(lambda txn: [txn.put(visit_changes.VISIT_KEY.pack(1, visitor), encode(visit), db=store.db(b"visits"))
                                 for visitor in range(1, 4)])
        table = VisitTable(store, _TIMEOUT, log_bytes=1)
        assert table._open == {(1, visitor): visit for visitor in range(1, 4)}
        for _ in itertools.repeat(None, folds):  # a change, folded by the next transaction
            store.write(lambda txn: table.forget_visitor(txn, 1, 2))
            table.committed()
            store.write(lambda txn: table.close_in(txn, _DAY0))
            table.committed()
        assert VisitTable(store, _TIMEOUT)._open == table._open
    finally:
        store.close()
