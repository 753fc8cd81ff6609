"""``HistoryStore.sql`` answers questions about the store's tables and nothing else.

One read-only statement (classified by DuckDB's own parser), DuckDB's external access
off and its configuration locked: no file outside the store's tables is read, nothing is
written, no database attached. A store folder that cannot be written is named in a
:class:`~koyeb_analytics.StoreError`.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import koyeb_analytics as ka

from .conftest import NOW, fast_client

SECRET = "kyb-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def sql_sim():
    with ka.simulate(seed=3, days=2, services=3, now=NOW) as s:
        yield s


@pytest.fixture(scope="module")
def synced_dir(sql_sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("sql-history") / "h"
    ka.HistoryStore(path).sync(fast_client(sql_sim))
    return path


@pytest.fixture
def store(synced_dir, tmp_path):
    """A private copy of the synced store: a test that fails may have damaged it."""
    path = tmp_path / "store"
    shutil.copytree(synced_dir, path)
    return ka.HistoryStore(path)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "koyeb.yaml"
    path.write_text(f"token,{SECRET}\n")
    (tmp_path / "koyeb.csv").write_text(f"token,{SECRET}\n")  # DuckDB scans it by name
    return path


def refused(store: ka.HistoryStore, query: str) -> str:
    with pytest.raises(ka.StoreError) as info:
        store.sql(query)
    assert type(info.value) is ka.StoreError
    return str(info.value)


def a_listed_file(store: ka.HistoryStore) -> str:
    return sorted(store.manifest()["events"]["files"])[0]


# -- what is refused -------------------------------------------------------------

@pytest.mark.parametrize("query, kind", [
    ("INSERT INTO events SELECT * FROM events", "INSERT"),
    ("CREATE TABLE t AS SELECT 1 AS x", "CREATE"),
    ("CREATE VIEW v AS SELECT * FROM events", "CREATE"),
    ("DROP VIEW events", "DROP"),
    ("DELETE FROM events", "DELETE"),
    ("UPDATE events SET type = 'x'", "UPDATE"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "SET"),
    ("SET threads = 1", "SET"),
    ("INSTALL httpfs FROM 'http://127.0.0.1:9/'", "LOAD"),
    ("LOAD '/nonexistent/x.duckdb_extension'", "LOAD"),
    ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("PREPARE p AS SELECT 1", "PREPARE"),
    ("VACUUM", "VACUUM"),
    ("DETACH memory", "DETACH"),
])
def test_statements_that_are_not_read_only_are_refused_by_kind(store, query, kind):
    message = refused(store, query)
    assert re.search(rf"\ban? {kind} statement", message), message
    assert "SELECT" in message and "DESCRIBE" in message and "EXPLAIN" in message


def test_copy_to_a_file_is_refused_and_writes_nothing(store, tmp_path):
    out = tmp_path / "out.csv"
    message = refused(store, f"COPY (SELECT * FROM events) TO '{out}' (HEADER)")
    assert "a COPY statement" in message
    assert not out.exists()


def test_copy_into_the_store_s_own_files_is_refused_and_the_next_read_is_unchanged(store):
    before = store.events()
    listed = a_listed_file(store)
    target = store.files.path(listed)
    data = open(target, "rb").read()
    for query in (
            f"COPY (SELECT * FROM events WHERE false) TO '{target}' "
            "(FORMAT parquet, USE_TMP_FILE false)",
            # EXPLAIN ANALYZE runs what it explains: only a SELECT may follow it.
            f"EXPLAIN ANALYZE COPY (SELECT * FROM events WHERE false) TO '{target}' "
            "(FORMAT parquet, USE_TMP_FILE false)",
            f"COPY (SELECT * FROM events) TO '{store.files.path('events')}' "
            "(FORMAT parquet, PARTITION_BY (type), OVERWRITE_OR_IGNORE)"):
        message = refused(store, query)
        assert "COPY" in message
    assert open(target, "rb").read() == data
    pd.testing.assert_frame_equal(store.events(), before)
    assert all(f in store.manifest()["events"]["files"] for f in store.files.data_files(
        "events"))


def test_attach_is_refused_and_creates_no_database(store, tmp_path):
    other = tmp_path / "other.duckdb"
    assert "an ATTACH statement" in refused(store, f"ATTACH '{other}' AS other")
    assert not other.exists()
    assert "an ATTACH statement" in refused(store, "ATTACH ':memory:' AS scratch")


def test_export_is_refused_and_writes_nothing(store, tmp_path):
    out = tmp_path / "export"
    assert "an EXPORT statement" in refused(store, f"EXPORT DATABASE '{out}'")
    assert not out.exists()


def test_more_than_one_statement_is_refused_before_any_runs(store, tmp_path):
    out = tmp_path / "second.csv"
    message = refused(store, f"SELECT 1; COPY (SELECT * FROM events) TO '{out}'")
    assert "one statement" in message and "2" in message and "COPY" in message
    assert not out.exists()
    assert "one statement" in refused(store, "SELECT 1; SELECT 2")


def test_a_query_with_no_statement_or_bad_syntax_is_refused_clearly(store):
    assert "no statement" in refused(store, "-- only a comment")
    assert "store.sql" in refused(store, "SELEC type FROM events")
    with pytest.raises(TypeError, match="query"):
        store.sql("   ")
    with pytest.raises(TypeError, match="query"):
        store.sql(b"select 1")  # type: ignore[arg-type]


def test_a_pivot_that_duckdb_runs_as_two_statements_says_how_to_write_it(store):
    message = refused(store, "PIVOT events ON type USING count(*)")
    assert "IN (" in message


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_text('{path}')",
    "SELECT * FROM '{folder}/koyeb.csv'",
    "SELECT * FROM read_csv('{path}', header = false, columns = {{'k': 'VARCHAR', "
    "'v': 'VARCHAR'}})",
    "SELECT * FROM read_csv_auto('{path}')",
    "SELECT * FROM read_blob('{path}')",
    "SELECT * FROM glob('{folder}/*')",
    "WITH s AS (SELECT content FROM read_text('{path}')) SELECT * FROM s",
    "SELECT (SELECT content FROM read_text('{path}')) AS c FROM events LIMIT 1",
    "DESCRIBE SELECT * FROM read_csv('{path}')",
    "EXPLAIN ANALYZE SELECT * FROM read_text('{path}')",
])
def test_a_select_reading_a_file_outside_the_store_fails_and_shows_nothing_of_it(
        store, secret_file, template, capsys):
    query = template.format(path=secret_file, folder=secret_file.parent)
    message = refused(store, query)
    assert "outside the store" in message
    assert SECRET not in message
    out, err = capsys.readouterr()
    assert SECRET not in out + err


def test_a_parquet_file_outside_the_store_is_not_read(store, tmp_path):
    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.table({"token": [SECRET]}), outside)
    message = refused(store, f"SELECT * FROM read_parquet('{outside}')")
    assert "outside the store" in message and SECRET not in message


def test_a_frame_in_the_caller_s_scope_is_not_a_table(store):
    leaked = pd.DataFrame({"token": [SECRET]})  # noqa: F841 - what a scan would find
    message = refused(store, "SELECT * FROM leaked")
    assert "leaked" in message and SECRET not in message


def test_the_store_s_own_other_files_are_not_readable_either(store):
    manifest = store.files.path("manifest.json")
    assert "outside the store" in refused(store, f"SELECT * FROM read_text('{manifest}')")
    glob_all = store.files.path("events") + "/*/*.parquet"
    assert "outside the store" in refused(store, f"SELECT * FROM read_parquet('{glob_all}')")


def test_turning_external_access_back_on_is_refused_and_changes_nothing(store, secret_file):
    assert "a SET statement" in refused(store, "SET enable_external_access = true")
    assert "a SET statement" in refused(store, "SET lock_configuration = false")
    message = refused(store, f"SELECT * FROM read_text('{secret_file}')")
    assert "outside the store" in message


def test_a_manifest_listing_a_file_outside_the_store_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere.parquet"
    pq.write_table(pa.table({"token": [SECRET]}), outside)
    path = store.files.path("manifest.json")
    manifest = json.loads(open(path).read())
    name = "events/date=2026-11-19/../../../elsewhere.parquet"
    manifest["events"]["files"][name] = {"date": "2026-11-19", "rows": 1}
    with open(path, "w") as fh:
        json.dump(manifest, fh)
    message = refused(store, "SELECT * FROM events")
    assert "elsewhere.parquet" in message and SECRET not in message


# -- what is allowed ---------------------------------------------------------------

def test_select_and_with_return_the_store_s_rows(store):
    ev = store.events()
    assert store.sql("SELECT count(*) AS n FROM events")["n"][0] == len(ev)
    by_type = store.sql("-- per type\nWITH t AS (SELECT type, count(*) AS n FROM events "
                        "GROUP BY type) SELECT type, n FROM t ORDER BY type;")
    assert dict(zip(by_type["type"], by_type["n"], strict=True)) == \
        ev["type"].value_counts().to_dict()
    short = store.sql("FROM instances SELECT id ORDER BY id")
    assert short["id"].tolist() == sorted(store.instances()["id"])


def test_pivot_with_its_values_named_is_allowed(store):
    ev = store.events()
    kinds = sorted(ev["type"].unique())[:2]
    listed = ", ".join(f"'{k}'" for k in kinds)
    wide = store.sql(f"PIVOT (SELECT type FROM events) ON type IN ({listed}) USING count(*)")
    counts = ev["type"].value_counts()
    assert [int(wide[k][0]) for k in kinds] == [int(counts[k]) for k in kinds]


def test_describe_summarize_and_show_describe_the_tables(store):
    described = store.sql("DESCRIBE events")
    assert set(described["column_name"]) == set(store.events().columns)
    summary = store.sql("SUMMARIZE events")
    assert set(summary["column_name"]) == set(store.events().columns)
    assert set(summary["count"]) == {len(store.events())}
    tables = store.sql("SHOW TABLES")
    assert set(tables["name"]) == {"events", "instance_records", "instances", "metrics", "logs",
                                  "platform"}


def test_explain_of_a_select_returns_its_plan(store):
    plan = store.sql("EXPLAIN SELECT type, count(*) FROM events GROUP BY type")
    assert list(plan.columns) == ["explain_key", "explain_value"]
    assert plan["explain_key"][0] == "physical_plan" and len(plan["explain_value"][0]) > 0
    analyzed = store.sql("EXPLAIN ANALYZE /* how long? */ SELECT count(*) "
                         "FROM instance_records")
    assert analyzed["explain_key"][0] == "analyzed_plan"
    as_json = store.sql("EXPLAIN (FORMAT json) (SELECT id FROM instances)")
    assert json.loads(as_json["explain_value"][0])


@pytest.mark.parametrize("query, kind", [
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "CREATE"),
    ("EXPLAIN (FORMAT json) COPY (SELECT 1) TO 'x.csv'", "COPY"),
    ("EXPLAIN (FORMAT json, ANALYZE) INSERT INTO events SELECT * FROM events", "INSERT"),
    ("EXPLAIN ANALYZE -- ( SELECT\n SET threads = 1", "SET"),
])
def test_explain_of_anything_but_a_select_is_refused(store, query, kind):
    message = refused(store, query)
    assert re.search(rf"EXPLAIN of an? {kind} statement", message), message


def test_an_empty_store_still_answers(tmp_path):
    store = ka.HistoryStore(tmp_path / "empty")
    store.append(instances=None, events=None)
    assert store.sql("SELECT count(*) AS n FROM events")["n"][0] == 0
    assert "a COPY statement" in refused(
        store, f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    assert not (tmp_path / "x.csv").exists()


def test_an_fsspec_store_answers_and_is_closed_the_same_way(sql_sim, store, secret_file):
    name = f"sql-test-{uuid.uuid4().hex[:8]}"
    memory = fsspec.filesystem("memory")
    try:
        remote = ka.HistoryStore(f"memory://{name}")
        remote.sync(fast_client(sql_sim))
        assert remote.sql("SELECT count(*) AS n FROM events")["n"][0] == len(remote.events())
        assert remote.sql("SELECT count(*) AS n FROM instances")["n"][0] == \
            len(remote.instances())
        with memory.open(f"/{name}-elsewhere/secret.txt", "wb") as fh:
            fh.write(SECRET.encode())
        for query in (f"SELECT * FROM read_text('memory:///{name}-elsewhere/secret.txt')",
                      f"SELECT * FROM read_text('memory:///{name}/manifest.json')",
                      f"SELECT * FROM read_text('{secret_file}')"):
            message = refused(remote, query)
            assert "outside the store" in message and SECRET not in message
        assert "a COPY statement" in refused(
            remote, f"COPY (SELECT 1) TO 'memory:///{name}-elsewhere/out.csv'")
        assert not memory.exists(f"/{name}-elsewhere/out.csv")
    finally:
        for path in (f"/{name}", f"/{name}-elsewhere"):
            if memory.exists(path):
                memory.rm(path, recursive=True)


# -- a folder that cannot be written ---------------------------------------------

def test_a_file_where_the_store_folder_should_be_is_named(tmp_path, sql_sim):
    in_the_way = tmp_path / "history"
    in_the_way.write_text("not a folder")
    for path in (in_the_way, in_the_way / "sub"):
        store = ka.HistoryStore(path)
        with pytest.raises(ka.StoreError) as info:
            store.sync(fast_client(sql_sim))
        assert str(in_the_way) in str(info.value) and "not a folder" in str(info.value)
        with pytest.raises(ka.StoreError, match="not a folder"):
            store.append(instances=None, events=None)
    with pytest.raises(ka.StoreError, match="not a folder"):
        ka.HistoryStore(in_the_way).events()
    assert in_the_way.read_text() == "not a folder"


class ReadOnlyMemory(MemoryFileSystem):
    """A memory filesystem that refuses every write, as a read-only bucket would."""

    protocol = ("readonly-mem",)

    def makedirs(self, path, exist_ok=False):
        raise PermissionError(f"read-only: {path}")

    def mkdir(self, path, create_parents=True, **kwargs):
        raise PermissionError(f"read-only: {path}")

    def _open(self, path, mode="rb", **kwargs):
        if "r" not in mode:
            raise PermissionError(f"read-only: {path}")
        return super()._open(path, mode, **kwargs)


def test_a_store_that_cannot_be_written_is_named(sql_sim):
    fsspec.register_implementation("readonly-mem", ReadOnlyMemory, clobber=True)
    store = ka.HistoryStore("readonly-mem://no-writes-here")
    with pytest.raises(ka.StoreError) as info:
        store.sync(fast_client(sql_sim))
    assert "no-writes-here" in str(info.value) and "cannot be written" in str(info.value)
