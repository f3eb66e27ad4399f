"""A corrected file for a wave that is already loaded: one answer changed, one respondent withdrawn (the wave spec
accepts the withdrawal). It supersedes the old load, both stay, the marts follow, the change can be queried (the
answers in fct_answer_corrections, the city's result on its row of fct_city_responsibility), the owner gets a
receipt, and an analyst reading the published marts meanwhile never sees an error or a half state.

One DAG run, shared by the tests of this module."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import ROOT, PipelineRun, copy_state, current_loads, lines_2019, with_waves_dir
from owner_mail import OWNER, Mailbox, assert_no_personal_data, personal_data, smtp_mailbox

from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.matching import match_key
from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths, pseudonym_key

LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


def _corrected_2019(tmp: Path) -> tuple[Path, str]:
    """Helsinki's key respondent corrects their answer; one other respondent's answers are withdrawn."""
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    lines = (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    col = {name: header.index(name) for name in ("Organisaatio", "Asema", LEAD, "Email")}
    rows = [line.split(",") for line in lines[1:]]
    codebook = Codebook.from_seeds(ROOT / "dbt_project" / "seeds")
    key_roles = {
        a.label_key
        for a in codebook.answers
        if a.wave_year == 2019 and a.question_id == "respondent_role" and a.answer_code in codebook.key_roles
    }

    def city(row: list[str]) -> str | None:
        return codebook.city_aliases.get(match_key(row[col["Organisaatio"]]))

    helsinki_cio = next(r for r in rows if city(r) == "091" and match_key(r[col["Asema"]]) in key_roles)
    assert helsinki_cio[col[LEAD]] == "Digijohtaja (CDO)"
    helsinki_cio[col[LEAD]] = "Tietohallinto"
    withdrawn = next(r for r in rows if match_key(r[col["Asema"]]) not in key_roles)
    rows.remove(withdrawn)
    # a withdrawal is accepted explicitly, by the respondent's reference (the removal guard prints it)
    reference = (
        "r-" + hashlib.sha256(f"{pseudonym_key()}|{match_key(withdrawn[col['Email']])}".encode()).hexdigest()[:8]
    )
    corrected = tmp / "city_survey_2019_export_corrected.csv"
    corrected.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n", encoding="utf-8-sig")
    waves = tmp / "waves"
    waves.mkdir()
    for year in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{year}.yml").read_text(encoding="utf-8"))
        data["file"] = str(corrected if year == 2019 else ROOT / data["file"])
        if year == 2019:
            data["accept_removals"] = [reference]
            data["owner_email"] = OWNER
        (waves / f"{year}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves, reference


@dataclass
class Redelivery:
    paths: Paths
    code: int
    log: Path
    reference: str  # the withdrawn respondent's, as accept_removals names it
    published_before: str  # published_at of the marts before the run
    mailbox: Mailbox
    reader: dict  # what the reader saw: publications, errors, iterations


READER = r"""
import json, os, sys, time, duckdb
path, stop, out = sys.argv[1:4]
seen, errors, iterations = set(), [], 0
while not os.path.exists(stop) or iterations < 3:
    try:
        with duckdb.connect(path, read_only=True) as con:
            published_at, tables = con.execute("select published_at, tables from marts.publication").fetchone()
            for table, expected in json.loads(tables).items():
                actual = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
                if actual != expected:
                    errors.append(f"{table}: {actual} rows, publication says {expected}")
            for year, cities, responded in con.execute(
                    "select wave_year, sum(cities), max(cities_responded) from marts.fct_responsibility_shares "
                    "group by 1").fetchall():
                if cities != responded:
                    errors.append(f"{year}: shares cover {cities} of {responded} cities")
            seen.add(str(published_at))
        iterations += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.05)
json.dump({"seen": sorted(seen), "errors": errors, "iterations": iterations}, open(out, "w"))
"""


def _published_at(paths: Paths) -> str:
    with duckdb.connect(str(paths.published), read_only=True) as con:
        return str(con.execute("select published_at from marts.publication").fetchone()[0])


@pytest.fixture(scope="module")
def redelivery(pipeline_run: PipelineRun) -> Iterator[Redelivery]:
    """The corrected 2019 file through the DAG on a copy of the main job's state, with an SMTP server for the
    owner's mail and a reader polling the published marts in a process of its own for the whole run."""
    paths = copy_state(pipeline_run, "corrected")
    waves, reference = _corrected_2019(paths.var)
    paths = with_waves_dir(paths, waves)
    runtime.setup(paths)
    before = _published_at(paths)
    stop, out = paths.var / "reader.stop", paths.var / "reader.json"
    with smtp_mailbox() as mailbox:
        reader = subprocess.Popen([sys.executable, "-c", READER, str(paths.published), str(stop), str(out)])
        try:
            code, _seconds, log = runner.run_wave(paths, 2019)
        finally:
            stop.touch()
            reader.wait(timeout=60)
        yield Redelivery(paths, code, log, reference, before, mailbox, json.loads(out.read_text()))


def test_a_corrected_file_supersedes_the_load_and_the_change_can_be_queried(redelivery: Redelivery) -> None:
    paths, code, log = redelivery.paths, redelivery.code, redelivery.log
    assert code == 0, log.read_text()[-3000:]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads = con.execute(
            "select status, is_current, row_count from raw.load_registry where wave_year = 2019 order by loaded_at"
        ).fetchall()
        kept = con.execute(
            "select count(distinct k.load_id) from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.wave_year = 2019"
        ).fetchone()
    assert [(s, c) for s, c, _n in loads] == [("superseded", False), ("passed", True)]
    assert loads[0][2] - loads[1][2] == 1 and kept == (2,), "both loads stay in raw"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        helsinki = con.execute(
            "select responsibility_code from marts.fct_city_responsibility "
            "where wave_year = 2019 and municipality_code = '091'"
        ).fetchone()[0]
        changes = con.execute(
            "select municipality_code, question_id, change_type, previous_answer_code, "
            "current_answer_code, is_accepted_removal from marts.fct_answer_corrections "
            "order by 3, 1, 2"
        ).fetchall()
        it_led = con.execute(
            "select cities from marts.fct_responsibility_shares where wave_year = 2019 and is_it_management"
        ).fetchone()[0]
        helsinki_corrected = con.execute(
            "select corrected_by_load_id, correction_kind, responsibility_code_before_correction, correction_reasons "
            "from marts.fct_city_responsibility where wave_year = 2019 and municipality_code = '091'"
        ).fetchone()
        kinds = con.execute("select distinct correction_kind, load_id from marts.fct_answer_corrections").fetchall()
    assert helsinki == "it_management", "the marts follow the correction"
    assert it_led == 8
    current = current_loads(paths)[2019]
    assert kinds == [("redelivery", current)], "every change is the re-delivery's"
    assert helsinki_corrected[:3] == (current, "redelivery", "chief_digital_officer"), "the city's row says from what"
    assert "lead_answer_changed" in helsinki_corrected[3].split(","), helsinki_corrected
    changed = [c for c in changes if c[2] == "changed"]
    assert all(c[2] != "removed" or c[5] for c in changes), "the withdrawal is marked as accepted"
    removed = [c for c in changes if c[2] == "removed"]
    assert changed == [("091", "lead", "changed", "chief_digital_officer", "it_management", False)]
    assert len(removed) == 4 and len({c[0] for c in removed}) == 1, "all answers of the withdrawn respondent"
    assert not [c for c in changes if c[2] == "added"]


def test_the_withdrawal_passes_because_the_spec_accepts_it(redelivery: Redelivery) -> None:
    """The removal guard's override: the withdrawn respondent is listed in accept_removals, so the load that drops
    them passes its gate, and the registry keeps what was accepted."""
    paths = redelivery.paths
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        accepted, status = con.execute(
            "select accepted_removals, status from raw.load_registry where wave_year = 2019 and is_current"
        ).fetchone()
    assert (accepted, status) == (redelivery.reference, "passed")
    with duckdb.connect(str(paths.published), read_only=True) as con:
        removals = con.execute(
            "select distinct is_accepted_removal from marts.fct_answer_corrections where change_type = 'removed'"
        ).fetchall()
    assert removals == [(True,)]


def test_the_publication_sends_the_owner_a_receipt(redelivery: Redelivery) -> None:
    paths, mailbox = redelivery.paths, redelivery.mailbox
    assert redelivery.code == 0 and len(mailbox.received) == 1, redelivery.log.read_text()[-3000:]
    receipt = mailbox.received[0]
    print(f"\n--- receipt ---\nSubject: {receipt.subject}\n\n{receipt.text}")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        rows, accepted, quarantined = con.execute(
            "select row_count, accepted_count, quarantined_count from raw.load_registry where load_id = ?",
            [current_loads(paths)[2019]],
        ).fetchone()
    with duckdb.connect(str(paths.published), read_only=True) as con:
        cities, responded, share = con.execute(
            "select cities, cities_responded, share from marts.fct_responsibility_shares "
            "where wave_year = 2019 and is_it_management"
        ).fetchone()
    assert rows == len(lines_2019()) - 2, "the corrected file: one respondent fewer"
    assert receipt.recipients == [OWNER]
    assert receipt.subject == f"Survey wave 2019 published: {accepted} rows accepted, {quarantined} quarantined"
    assert f"{rows} rows, {accepted} accepted, {quarantined} quarantined" in receipt.text
    assert f"IT-led share: {cities}/{responded} answering cities ({share:.1%})" in receipt.text
    assert f"Published marts: {paths.shown(paths.published)}" in receipt.text
    assert_no_personal_data(receipt, personal_data(lines_2019()))


def test_a_reader_never_errors_or_sees_a_partial_state_during_the_run(redelivery: Redelivery) -> None:
    """A process reading the published marts over and over while the run loads, builds and publishes: every read
    is a whole publication (each table as many rows as the publication says, every city in the shares)."""
    seen = redelivery.reader
    assert redelivery.code == 0, redelivery.log.read_text()[-2000:]
    assert seen["errors"] == [] and seen["iterations"] > 10
    assert seen["seen"] == sorted([redelivery.published_before, _published_at(redelivery.paths)]), (
        "the reader saw the old marts, then the new ones"
    )
