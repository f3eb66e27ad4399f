"""Nothing new, nothing done; a broken delivery is stopped at the gate, changes nothing, publishes and exports
nothing, and its owner hears why.

Both scenarios run in one `run` process, as `make run` would run them: 2018 again with nothing changed, then a
broken 2019 delivery. The tests of this module check what each run did from different sides."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import (
    PipelineRun,
    asset_events,
    copy_state,
    copy_with_exports,
    current_loads,
    dag_runs,
    export_listing,
    file_sha256_of,
    latest_load,
    lines_2019,
    task_states,
    use_paths,
    waves_with_file,
    with_waves_dir,
)
from owner_mail import OWNER, SENDER, Mailbox, assert_no_personal_data, personal_data, smtp_mailbox

from survey_warehouse import quality
from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.publishing import exports
from survey_warehouse.settings import Paths

pytestmark = pytest.mark.slow

RAW_TABLES = ("raw.load_registry", "raw.survey_columns", "raw.wave_cities_surveyed")  # and raw.survey_cells
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


def _marts(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where "
                "table_schema = 'marts' and table_name <> 'publication'"
            ).fetchall()
        ]
        return {t: sorted(con.execute(f"select * from marts.{t}").fetchall(), key=repr) for t in tables}


def _raw_counts(path: Path, year: int) -> dict[str, int]:
    """Rows per raw table of one wave year's loads."""
    loads = f"select load_id from raw.load_registry where wave_year = {int(year)}"
    with duckdb.connect(str(path), read_only=True) as con:
        out = {t: con.execute(f"select count(*) from {t} where load_id in ({loads})").fetchone()[0] for t in RAW_TABLES}
        out["raw.survey_cells"] = con.execute(
            "select count(*) from raw.survey_cells join raw.survey_columns using (column_id) "
            f"where load_id in ({loads})"
        ).fetchone()[0]
        return out


@dataclass
class Run:
    """A wave's DAG run on a copy of the main job's state, and what was there before the process started."""

    paths: Paths
    code: int
    log: Path
    raw_2018_before: dict[str, int]
    marts_before: dict[str, list[tuple]]
    published_sha: str
    published_stat: os.stat_result
    current_before: dict[int, str]
    exports_before: dict[str, int]
    mailbox: Mailbox


@pytest.fixture(scope="module")
def runs(pipeline_run: PipelineRun) -> Iterator[dict[int, Run]]:
    """2018 again through the DAG with nothing changed since the main job published it, then the broken 2019
    delivery, in one `run` process, with an SMTP server listening for what the 2019 wave's owner is sent."""
    paths = copy_with_exports(pipeline_run, "gate")
    paths = with_waves_dir(paths, _broken_wave(paths.var))
    runtime.setup(paths)
    before = {
        "raw_2018_before": _raw_counts(paths.warehouse, 2018),
        "marts_before": _marts(paths.published),
        "published_sha": file_sha256_of(paths.published),
        "published_stat": paths.published.stat(),
        "current_before": current_loads(paths),
        "exports_before": export_listing(paths),
    }
    with smtp_mailbox() as mailbox:
        outcomes = runner.run_years(paths, [2018, 2019])
        yield {year: Run(paths, code, log, mailbox=mailbox, **before) for year, (code, _s, log) in outcomes.items()}


# ------------------------------------------------------------------------------------ nothing new, nothing done


@pytest.fixture(scope="module")
def unchanged_rerun(runs: dict[int, Run]) -> Run:
    return runs[2018]


def test_running_an_unchanged_wave_again_does_nothing(unchanged_rerun: Run) -> None:
    run, paths = unchanged_rerun, unchanged_rerun.paths
    assert run.code == 0, run.log.read_text()[-3000:]
    assert "wave 2018: unchanged since publication" in run.log.read_text()
    ran = {t for t, state in task_states(paths, 2018).items() if state != "skipped"}
    assert ran == {"dbt_build.dbt_producer_watcher_done"}, "nothing but the watcher's empty gate ran"
    assert _raw_counts(paths.warehouse, 2018) == run.raw_2018_before, "no new load of 2018"
    assert _marts(paths.published) == run.marts_before
    after = paths.published.stat()
    assert (after.st_mtime_ns, after.st_ino) == (run.published_stat.st_mtime_ns, run.published_stat.st_ino), (
        "the published file is not even rewritten"
    )


def test_an_unchanged_rerun_records_no_event_and_exports_nothing(unchanged_rerun: Run) -> None:
    paths = unchanged_rerun.paths
    assert task_states(paths, 2018)["publish_marts"] == "skipped"
    assert asset_events(paths) == []
    assert dag_runs(paths, "survey_marts_exports") == []
    assert export_listing(paths) == unchanged_rerun.exports_before


# ------------------------------------------------------------------------------------ a delivery the gate stops


def _broken_wave(tmp: Path) -> Path:
    """A copy of the 2019 wave with unknown cities and answer labels missing from the codebook in 6 rows (more
    than the 5 % of quarantined rows a load may have), from a wave whose spec names its owner."""
    lines = lines_2019()
    header = lines[0].split(",")
    city, lead = header.index("Organisaatio"), header.index(LEAD)
    for line in (2, 3, 6, 7):  # file rows 3, 4, 7, 8
        row = lines[line].split(",")
        row[city] = "Tamperee"
        lines[line] = ",".join(row)
    for line in (4, 5):  # file rows 5, 6
        row = lines[line].split(",")
        row[lead] = "Pormestari"
        lines[line] = ",".join(row)
    broken = tmp / "city_survey_2019_export_broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return waves_with_file(tmp, 2019, broken, owner_email=OWNER)


@pytest.fixture(scope="module")
def broken_run(runs: dict[int, Run]) -> Run:
    return runs[2019]


def test_a_broken_wave_fails_the_gate_and_the_published_marts_stay(broken_run: Run) -> None:
    run, paths = broken_run, broken_run.paths
    assert run.code != 0, "the run must fail when the raw gate fails"
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "failed"
    assert states["record_failure"] == "success"
    dbt_states = {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert dbt_states == {"upstream_failed"}, "dbt must not run on a rejected wave"
    assert states["publish_marts"] == "upstream_failed"
    assert file_sha256_of(paths.published) == run.published_sha, "the published marts must stay as they were"
    assert _marts(paths.published) == run.marts_before
    assert current_loads(paths) == run.current_before
    status, message = latest_load(paths, 2019)
    assert status == "failed"
    # the message says which expectation failed on which data, with the file's rows and columns
    assert "raw_load: expect_column_values_to_be_between on column 'quarantined_share'" in message
    rows = len(lines_2019()) - 1
    assert f"6 of {rows} rows ({6 / rows:.1%}) quarantined" in message
    assert "row 3, column 'Organisaatio': unknown city 'Tamperee'" in message
    assert (
        "row 5, column 'Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?': answer (a value that "
        "resembles none the codebook knows here: not quoted, see the file) is not in the 2019 codebook"
    ) in message
    assert "Pormestari" not in message, "a value that is no misspelling of a label is not quoted"
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantined = con.execute(
            "select source_row_number, reason_code from raw.quarantine q join "
            "raw.load_registry r using (load_id) where r.status = 'failed' "
            "order by 1"
        ).fetchall()
    assert quarantined == [
        (3, "unknown_city"),
        (4, "unknown_city"),
        (5, "unknown_answer"),
        (6, "unknown_answer"),
        (7, "unknown_city"),
        (8, "unknown_city"),
    ]
    assert "Wave 2019" in run.log.read_text()


def test_a_failed_run_records_no_event_and_exports_nothing_new(broken_run: Run) -> None:
    paths = broken_run.paths
    assert task_states(paths, 2019)["publish_marts"] == "upstream_failed"
    assert asset_events(paths) == []
    assert dag_runs(paths, "survey_marts_exports") == []
    assert export_listing(paths) == broken_run.exports_before, (
        "no new export folder, and latest still points at the last publication"
    )
    with duckdb.connect(str(paths.published), read_only=True) as con:
        published_at = con.execute("select published_at from marts.publication").fetchall()[0][0]
    assert exports.is_exported(paths, published_at), "the published marts stay, and so does their export"


def test_a_failed_gate_tells_the_owner(broken_run: Run) -> None:
    run, paths, mailbox = broken_run, broken_run.paths, broken_run.mailbox
    assert len(mailbox.received) == 1, run.log.read_text()[-3000:]
    mail = mailbox.received[0]
    print(f"\n--- failure e-mail ---\nSubject: {mail.subject}\n\n{mail.text}")
    assert mail.recipients == [OWNER] and mail.sender == SENDER
    assert mail.subject == "Survey wave 2019: the run failed at validate_raw_wave (the raw gate)"
    assert mail.message["X-Survey-Wave"] == "2019"
    assert "Wave: 2019\nStep: validate_raw_wave\n" in mail.text
    # the gate's first lines as the gate wrote them, with the rows and what to do
    report_path = re.search(r"Gate report: (\S+)", mail.text)[1]
    report = quality.GateReport.read(paths.root / report_path)
    assert not report.success
    for line in report.message().splitlines()[:3]:
        assert line.rstrip() in mail.text
    assert "row 3, column 'Organisaatio': unknown city 'Tamperee'; if it is a way of writing" in mail.text
    assert "city_aliases.csv" in mail.text
    status, message = latest_load(paths, 2019)
    assert status == "failed" and message.splitlines()[1] in mail.text, "the reason the registry keeps"
    assert f"Data Docs: {paths.shown(paths.data_docs / 'index.html')}" in mail.text
    assert f"Log: {run.log}" in mail.text
    assert_no_personal_data(mail, personal_data(lines_2019()))


# ------------------------------------------------------------------------------------ the marts gate


def test_marts_gate_names_the_failed_expectation(pipeline_run: PipelineRun, monkeypatch) -> None:
    paths = copy_state(pipeline_run, "marts_gate")
    use_paths(monkeypatch, paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from marts.fct_city_responsibility where city_wave_id = '2018-091'")
        con.execute(
            "update marts.fct_responsibility_shares set share = 1.5 where wave_year = 2019 "
            "and responsibility_code = 'it_management'"
        )
    with pytest.raises(quality.QualityGateFailed) as failed:
        quality.run_gate(quality.marts_checkpoint(quality.file_context(paths), "broken", paths), paths)
    message = str(failed.value)
    assert "fct_city_responsibility: expect_table_row_count_to_equal" in message
    assert "fct_responsibility_shares: expect_column_values_to_be_between on column 'share'" in message
    assert "responsibility_share_totals" in message
    assert os.environ["SURVEY_WAREHOUSE_PATH"] == str(paths.warehouse)
