"""Faults say their cause first and leave nothing behind.

A full disk while publishing is made real: the published folder is a small tmpfs (mounting needs root, which CI
has; elsewhere the test is skipped, in CI it fails). The errors of the libraries underneath are made by the
libraries themselves where the machine can (a refused PostgreSQL connection, a DuckDB file another process holds,
the operating system's ENOSPC), and each is put in words by `faults.cause`."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg2
import pytest
from conftest import ROOT, make_paths, use_paths
from test_exports import _publish as _publish_for_export
from test_exports import _utc
from test_load_lifecycle import Warehouse_, _publish_all

from survey_warehouse import quality
from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.operations import faults
from survey_warehouse.orchestration.pipeline import failure_message
from survey_warehouse.publishing import exports
from survey_warehouse.publishing import publish as publishing
from survey_warehouse.publishing.publish import publish, recover_publication, sweep_stopped_copies
from survey_warehouse.quality import Failure, GateReport, UnreadableReport
from survey_warehouse.raw.load import load_wave
from survey_warehouse.warehouse import Warehouse


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "64m") -> Iterator[Path]:
    """`folder` as a tmpfs of `size` while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        check=False,
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI runs as root and must")
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """A file that takes all the free space of `folder`'s filesystem but `leave_bytes`."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def test_a_full_disk_while_publishing_keeps_the_marts_leaves_nothing_and_says_so() -> None:
    house = Warehouse_("faults_full_disk")
    folder = house.paths.published.parent
    with small_filesystem(folder):
        _publish_all(house)
        before = house.paths.published.read_bytes()
        registry_before = house.registry()
        house.deliver(2019, 1)
        out = house.run(2019, "full", kill_after="build")
        filler = _fill(folder, 64 * 1024)

        with pytest.raises((duckdb.Error, OSError)) as failed:
            publish(house.warehouse, house.paths.published, out["build"], "full")

        said = faults.cause(failed.value)
        assert said is not None and said.startswith("No space left on device writing "), faults.described(failed.value)
        assert str(folder) in said and said.endswith("free space there and run again"), said
        assert house.paths.published.read_bytes() == before, "the published marts stay as they were"
        assert sorted(p.name for p in folder.iterdir()) == sorted([house.paths.published.name, filler.name]), (
            "no half-written copy is left on the full disk"
        )
        assert [r for r in house.registry() if r[0] != out["load_id"]] == [
            r for r in registry_before if r[0] != out["load_id"]
        ]
        # the failure message the summary and the mail start with names the cause before the exception
        message = failure_message(
            house.paths, house.warehouse, ["publish"], out["load_id"], {"publish": faults.described(failed.value)}
        )
        assert message.startswith(f"the run failed at publish: {said}\n"), message

        # the space freed, the next run publishes with no manual step
        filler.unlink()
        house.deliver(2019, 2)
        assert house.run(2019, "after")["end"] == "published"
        assert house.paths.published.read_bytes() != before
        assert [p.name for p in folder.iterdir()] == [house.paths.published.name]


def test_a_full_disk_while_loading_keeps_the_registry_says_so_and_the_next_run_loads() -> None:
    """The warehouse's own folder fills up while a corrected wave is loaded into raw: the load fails naming the
    full disk and where (whatever DuckDB raises on top of it), the registry and the published marts stay as they
    were, and with the space freed the next run loads and publishes with no manual step."""
    house = Warehouse_("faults_full_disk_load")
    folder = house.paths.warehouse.parent
    with small_filesystem(folder):
        _publish_all(house)
        registry_before, published_before = house.registry(), house.paths.published.read_bytes()
        house.deliver(2019, 1)
        filler = _fill(folder, 16 * 1024)

        with pytest.raises((duckdb.Error, OSError)) as failed:
            load_wave(find_wave_spec(2019, house.paths), house.warehouse, paths=house.paths)

        said = faults.cause(failed.value)
        assert said is not None and said.startswith("No space left on device writing "), faults.described(failed.value)
        assert str(folder) in said, said
        assert house.registry() == registry_before, "a load that could not be written left a trace in the registry"
        assert house.paths.published.read_bytes() == published_before

        filler.unlink()
        assert house.run(2019, "after")["end"] == "published"
        current_2019 = [r for r in house.registry() if r[1] == 2019 and r[3]]
        assert current_2019 and current_2019[0][5] == house.file_sha(2019), "the corrected file is the current load"


def test_a_full_disk_while_exporting_leaves_the_last_export_whole_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exports folder fills up while the marts are written as Parquet and CSV: the export fails naming the full
    disk, no partial folder is left, `latest` still points at the complete export before it, and with the space
    freed the next export goes through."""
    paths = make_paths("faults_full_disk_exports")
    use_paths(monkeypatch, paths)
    root = exports.exports_dir(paths)
    with small_filesystem(root, "8m"):
        _publish_for_export(paths, _utc(2019, 6, 1, 6, 0, 0))
        exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
        before = {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")}
        _publish_for_export(paths, _utc(2019, 6, 2, 6, 0, 0))
        filler = _fill(root, 8 * 1024)

        with pytest.raises((duckdb.Error, OSError)) as failed:
            exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

        said = faults.cause(failed.value)
        assert said is not None and said.startswith("No space left on device"), faults.described(failed.value)
        assert paths.shown(root) in said, said
        after = {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*") if p != filler}
        assert after == before, "a partial export was left, or latest moved"

        filler.unlink()
        export = exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
        assert exports.is_exported(paths, _utc(2019, 6, 2, 6, 0, 0)), export


def test_a_gate_report_on_a_full_disk_is_not_left_cut_off(tmp_path: Path) -> None:
    """A gate report that cannot be written whole is not written at all (the summary and the run's message read it
    as the gate's verdict); one cut off by an older version or by hand is named, not a JSON traceback."""
    folder = tmp_path / "reports"
    report = GateReport(
        "raw_wave", "2019-x", False, 40, [Failure("raw_wave", "expect_x", "col", 2, ["too many " * 40000], [1, 2])]
    )
    with small_filesystem(folder, "1m"):
        filler = _fill(folder, 4 * 1024)
        with pytest.raises(OSError, match="No space left") as failed:
            report.write(folder / "2019-x.json")
        assert failed.value.errno == errno.ENOSPC
        assert sorted(p.name for p in folder.iterdir()) == [filler.name], "a cut-off report or its temporary stayed"
        filler.unlink()
        report.write(folder / "2019-x.json")
        assert GateReport.read(folder / "2019-x.json") == report

    cut = tmp_path / "cut.json"
    cut.write_text('{"gate": "raw_wave", "batch": "2019', encoding="utf-8")
    with pytest.raises(UnreadableReport, match=r"cut\.json cannot be read"):
        GateReport.read(cut)


def test_a_full_disk_under_data_docs_fails_the_gate_naming_that_folder_and_the_next_gate_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Great Expectations' Data Docs cannot be written (their folder's filesystem is full; GX's error names no
    file): the raw gate fails with the full folder named, leaves no report read as its verdict, and passes once the
    space is freed."""
    house = Warehouse_("faults_full_disk_docs")
    paths = house.paths
    use_paths(monkeypatch, paths)
    spec = find_wave_spec(2019, paths)
    loaded = load_wave(spec, house.warehouse, paths=paths)
    codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
    report = quality.report_path(paths, "raw_wave", loaded.load_id)
    with small_filesystem(paths.data_docs, "8m"):
        filler = _fill(paths.data_docs, 8 * 1024)
        checkpoint = quality.raw_wave_checkpoint(
            quality.file_context(paths), spec, loaded.load_id, paths, house.warehouse, codebook
        )
        with pytest.raises(OSError, match="No space left") as failed:
            quality.run_gate(checkpoint, paths)
        said = faults.cause(failed.value)
        assert said == (
            f"No space left on device ({paths.shown(paths.data_docs)}: 0 KiB free): free space there and run again"
        ), said
        assert not report.exists(), "a report of a gate that did not finish"

        filler.unlink()
        checkpoint = quality.raw_wave_checkpoint(
            quality.file_context(paths), spec, loaded.load_id, paths, house.warehouse, codebook
        )
        assert quality.run_gate(checkpoint, paths).success
        assert report.exists()


class _TaskInstance:
    """What a step's callback is given as `ti`: its XComs are kept here."""

    def __init__(self) -> None:
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


def test_a_full_disk_during_the_dbt_build_is_named_in_the_runs_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt builds into a warehouse whose filesystem is full. The error is dbt's own, raised by Cosmos as the DAG's
    producer raises it (its runner's result through Cosmos's own check); the producer's failure callback keeps it,
    and the run's message names the full disk and where, not "a dbt model or test failed"."""
    import airflow  # noqa: F401 (before Cosmos, whose import starts Airflow's, which imports Cosmos's plugin)
    from cosmos.dbt.runner import handle_exception_if_needed
    from cosmos.exceptions import CosmosDbtRunError
    from dbt.cli.main import dbtRunner

    from survey_warehouse.orchestration.pipeline import PRODUCER_TASK_ID, keep_the_error_of

    folder = tmp_path / "warehouse"
    with small_filesystem(folder, size="8m"):
        warehouse = folder / "survey.duckdb"
        with duckdb.connect(str(warehouse)) as con:
            con.execute("create schema raw")
        filler = _fill(folder, 0)
        monkeypatch.setenv("SURVEY_WAREHOUSE_PATH", str(warehouse))
        monkeypatch.setenv("SURVEY_DBT_TARGET", "duckdb")
        project = ROOT / "dbt_project"
        folders = ["--project-dir", str(project), "--profiles-dir", str(project)]
        folders += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
        result = dbtRunner().invoke(["build", "--select", "resource_type:seed", *folders, "--no-use-colors"])
        with pytest.raises(CosmosDbtRunError) as failed:
            handle_exception_if_needed(result)

        ti = _TaskInstance()
        keep_the_error_of({"ti": ti, "exception": failed.value})
        kept = ti.xcoms["error"]
        assert isinstance(kept, str)
        steps = [PRODUCER_TASK_ID, "dbt_build.cities_seed", "dbt_build.codebook_answers_seed"]
        paths = make_paths("faults_full_disk_dbt")
        message = failure_message(paths, Warehouse("duckdb", warehouse), steps, None, {PRODUCER_TASK_ID: kept})
        said = faults.cause(failed.value)
        assert said is not None and said.startswith(f"No space left on device writing {folder}"), kept
        assert message.startswith(f"the run failed at {PRODUCER_TASK_ID}, 2 more dbt_build steps: {said}\n"), message
        filler.unlink()


def test_a_skipped_step_or_one_without_an_exception_keeps_no_error() -> None:
    from survey_warehouse.orchestration.pipeline import keep_the_error_of

    class AirflowSkipException(Exception):
        pass

    for context in ({"exception": AirflowSkipException("nothing to do")}, {"exception": None}, {}):
        ti = _TaskInstance()
        keep_the_error_of({**context, "ti": ti})
        assert ti.xcoms == {}


def test_copies_a_killed_publication_left_are_swept_by_the_next_run(tmp_path: Path) -> None:
    published = tmp_path / "survey_marts.duckdb"
    published.write_bytes(b"marts")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    gone, host = int(dead.stdout), publishing._host()
    left = [
        tmp_path / f".survey_marts.duckdb.{host}.{gone}.tmp",
        tmp_path / f".survey_marts.duckdb.{host}.{gone}.tmp.wal",
    ]
    kept = [
        tmp_path / f".survey_marts.duckdb.{host}.{os.getppid()}.tmp",  # a publication still going on here
        tmp_path / f".survey_marts.duckdb.other-host.{gone}.tmp",  # another machine's, maybe still writing
        tmp_path / f".survey_marts.duckdb.{host}.{gone}.tmp-notes.txt",  # not a copy's name
        tmp_path / ".other.duckdb.x.123.tmp",
    ]
    for path in (*left, *kept):
        path.write_bytes(b"half-written")
    old_other = tmp_path / f".survey_marts.duckdb.other-host.{gone + 1}.tmp"  # another machine's, from days ago
    old_other.write_bytes(b"half-written")
    os.utime(old_other, (time.time() - 3 * 86400, time.time() - 3 * 86400))

    assert sorted(sweep_stopped_copies(published)) == sorted([*left, old_other])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([published.name, *(p.name for p in kept)])


def test_every_run_sweeps_them_before_it_reads_the_marts() -> None:
    house = Warehouse_("faults_sweep")
    _publish_all(house)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    stale = house.paths.published.with_name(
        f".{house.paths.published.name}.{publishing._host()}.{int(dead.stdout)}.tmp"
    )
    stale.write_bytes(b"half-written")
    recover_publication(house.warehouse, house.paths.published)
    assert not stale.exists()


# ------------------------------------------------------------------------------ causes, as the libraries raise them


def test_the_operating_systems_full_disk_is_named_with_its_path(tmp_path: Path) -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.parquet"))
    assert (
        faults.cause(error)
        == f"No space left on device writing {tmp_path / 'x.parquet'}: free space there and run again"
    )
    wrapped = RuntimeError("the export failed")
    wrapped.__cause__ = error
    assert faults.cause(wrapped) == faults.cause(error), "found anywhere in the chain"


def test_a_copy_onto_a_full_disk_names_where_it_was_writing_not_what_it_read(tmp_path: Path) -> None:
    source, target = tmp_path / "delivered.csv", tmp_path / "full" / "archive.csv"
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source), None, str(target))
    assert faults.cause(error) == f"No space left on device writing {target}: free space there and run again"


def test_duckdbs_full_disk_inside_its_checkpoint_error_is_named(tmp_path: Path) -> None:
    """DuckDB's words when its checkpoint cannot write, the OS's words at the end (the form a full disk gave)."""
    text = (
        "IO Error: Detached database 'pub', but CHECKPOINT during DETACH failed: Checkpoint failed for database "
        f'"pub". The database has been invalidated. Original error: Could not write file "{tmp_path}/.m.tmp": '
        "No space left on device"
    )
    assert faults.cause(duckdb.IOException(text)) == (
        f"No space left on device writing {tmp_path}/.m.tmp: free space there and run again"
    )


def test_a_refused_postgresql_connection_is_named_with_its_server() -> None:
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(host="127.0.0.1", port=1, user="postgres", dbname="postgres", connect_timeout=3)
    said = faults.cause(refused.value)
    assert said is not None and said.startswith("PostgreSQL at 127.0.0.1:1 refuses connections"), str(refused.value)


def test_a_duckdb_file_another_process_holds_names_that_process(tmp_path: Path) -> None:
    path = tmp_path / "survey.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(duckdb.IOException) as locked:
            duckdb.connect(str(path))
        said = faults.cause(locked.value)
        assert said == (
            f"another process (pid {holder.pid}) holds the warehouse file {path}: wait for it to finish, or stop it, "
            "and run again"
        ), str(locked.value)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("raised", "starts"),
    [
        (
            psycopg2.OperationalError('FATAL:  password authentication failed for user "survey"'),
            "PostgreSQL refused the password of user survey",
        ),
        (
            psycopg2.OperationalError("FATAL:  terminating connection due to administrator command"),
            "the PostgreSQL server ended the session",
        ),
        (psycopg2.OperationalError('FATAL:  database "survey_wh" does not exist'), 'the database "survey_wh" does not'),
        (ValueError("Could not find a value for secret field password."), "the connection survey_warehouse"),
    ],
)
def test_known_errors_of_the_libraries_are_put_in_words(raised: Exception, starts: str) -> None:
    said = faults.cause(raised)
    assert said is not None and said.startswith(starts), said
    assert faults.described(raised).startswith(said + "\n"), "the cause first, then the error as raised"


def test_an_error_no_rule_knows_is_shown_as_raised() -> None:
    error = KeyError("wave_year")
    assert faults.cause(error) is None
    assert faults.described(error) == "KeyError: 'wave_year'"


def _holding(path: Path) -> subprocess.Popen:
    """A process that holds the DuckDB file `path` open for writing (an analyst's notebook, another run)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
    return holder


def test_a_step_keeps_the_cause_of_any_failure_for_the_runs_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a DAG step raises (not only the project's own errors), its cause reaches record_failure."""
    from survey_warehouse.orchestration import pipeline
    from survey_warehouse.warehouse import Session, Warehouse

    kept: list[str] = []
    monkeypatch.setattr(pipeline, "remember_error", lambda exc: kept.append(faults.described(exc)))
    path = tmp_path / "survey.duckdb"
    duckdb.connect(str(path)).close()
    holder = _holding(path)
    try:

        @pipeline.keeps_its_error
        def step() -> None:
            with Session(Warehouse.duckdb(path)):
                pass

        with pytest.raises(Exception, match="another process"):
            step()
    finally:
        holder.kill()
        holder.wait()
    assert len(kept) == 1 and kept[0].startswith(f"another process (pid {holder.pid}) holds the warehouse file"), kept

    @pipeline.keeps_its_error
    def skipped() -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("nothing to do")

    with pytest.raises(Exception, match="nothing to do"):
        skipped()
    assert len(kept) == 1, "a skip is no failure"


def test_the_summary_says_why_it_cannot_read_the_warehouse(capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_paths

    from survey_warehouse.operations import summary
    from survey_warehouse.warehouse import Warehouse

    paths = make_paths("faults_summary_locked")
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(paths.warehouse)).close()
    holder = _holding(paths.warehouse)
    try:
        summary.print_summary(paths, {}, Warehouse.duckdb(paths.warehouse))
    finally:
        holder.kill()
        holder.wait()
    out = capsys.readouterr().out
    assert f"The summary cannot read the warehouse: another process (pid {holder.pid}) holds" in out, out
    assert "Traceback" not in out
