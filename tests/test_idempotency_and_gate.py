"""Nothing new, nothing done; a broken or partial delivery is stopped at the gate; a failed run changes nothing,
whichever step failed, and another wave's run then goes through."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import ROOT, PipelineRun, copy_state, task_states, use_paths, with_waves_dir
from survey_warehouse import cli, quality
from survey_warehouse.codebook import Codebook
from survey_warehouse.matching import match_key
from survey_warehouse.settings import Paths, pseudonym_key

RAW_TABLES = ("raw.load_registry", "raw.survey_cells", "raw.wave_cities_surveyed")
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


def _marts(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute("select table_name from information_schema.tables where "
                                            "table_schema = 'marts' and table_name <> 'publication'").fetchall()]
        return {t: sorted(con.execute(f"select * from marts.{t}").fetchall(), key=repr) for t in tables}


def _raw_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in RAW_TABLES}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _current(paths: Paths) -> dict[int, str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return dict(con.execute("select wave_year, load_id from raw.load_registry where is_current").fetchall())


def _latest(paths: Paths, year: int) -> tuple[str, str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute("select status, status_message from raw.load_registry where wave_year = ? "
                           "order by loaded_at desc limit 1", [year]).fetchone()


def _waves_with(tmp: Path, year: int, file: Path, **spec_changes) -> Path:
    """A waves folder where one wave's spec points at another file (and may change other keys)."""
    waves = tmp / "waves"
    waves.mkdir(exist_ok=True)
    for y in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{y}.yml").read_text(encoding="utf-8"))
        data["file"] = str(file if y == year else ROOT / data["file"])
        if y == year:
            data.update(spec_changes)
        (waves / f"{y}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves


def _lines_2019() -> list[str]:
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    return (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()


def test_running_an_unchanged_wave_again_does_nothing(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "idempotency")
    cli.setup(paths)
    raw_before, marts_before = _raw_counts(paths.warehouse), _marts(paths.warehouse)
    published_stat = paths.published.stat()

    code, _seconds, log = cli.run_wave(paths, 2018)

    assert code == 0, log.read_text()[-3000:]
    assert "wave 2018: unchanged since publication" in log.read_text()
    ran = {t for t, state in task_states(paths, 2018).items() if state != "skipped"}
    assert ran == {"dbt_build.dbt_producer_watcher_done"}, "nothing but the watcher's empty gate ran"
    assert _raw_counts(paths.warehouse) == raw_before
    assert _marts(paths.warehouse) == marts_before
    after = paths.published.stat()
    assert (after.st_mtime_ns, after.st_ino) == (published_stat.st_mtime_ns, published_stat.st_ino), \
        "the published file is not even rewritten"


def _broken_wave(tmp: Path) -> Path:
    """A copy of the 2019 wave with unknown cities and answer labels missing from the codebook in 6 rows (more
    than the 5 % of quarantined rows a load may have)."""
    lines = _lines_2019()
    header = lines[0].split(",")
    city, lead = header.index("Organisaatio"), header.index(LEAD)
    for line in (2, 3, 6, 7):  # file rows 3, 4, 7, 8
        row = lines[line].split(",")
        row[city] = "Atlantis"
        lines[line] = ",".join(row)
    for line in (4, 5):  # file rows 5, 6
        row = lines[line].split(",")
        row[lead] = "Pormestari"
        lines[line] = ",".join(row)
    broken = tmp / "city_survey_2019_export_broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return _waves_with(tmp, 2019, broken)


def test_a_broken_wave_fails_the_gate_and_the_published_marts_stay(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "gate")
    paths = with_waves_dir(paths, _broken_wave(paths.var))
    cli.setup(paths)
    published_sha = _sha(paths.published)
    marts_before = _marts(paths.published)
    current_before = _current(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0, "the run must fail when the raw gate fails"
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "failed"
    assert states["record_failure"] == "success"
    dbt_states = {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert dbt_states == {"upstream_failed"}, "dbt must not run on a rejected wave"
    assert states["publish_marts"] == "upstream_failed"
    assert _sha(paths.published) == published_sha, "the published marts must stay as they were"
    assert _marts(paths.published) == marts_before
    assert _current(paths) == current_before
    status, message = _latest(paths, 2019)
    assert status == "failed"
    # the message says which expectation failed on which data, with the file's rows and columns
    assert "raw_load: expect_column_values_to_be_between on column 'quarantined_share'" in message
    rows = len(_lines_2019()) - 1
    assert f"6 of {rows} rows ({6 / rows:.1%}) quarantined" in message
    assert "row 3, column 'Organisaatio': unknown city 'Atlantis'" in message
    assert ("row 5, column 'Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?': answer 'Pormestari' "
            "is not in the 2019 codebook") in message
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantined = con.execute("select source_row_number, reason_code from raw.quarantine q join "
                                  "raw.load_registry r using (load_id) where r.status = 'failed' "
                                  "order by 1").fetchall()
    assert quarantined == [(3, "unknown_city"), (4, "unknown_city"), (5, "unknown_answer"), (6, "unknown_answer"),
                           (7, "unknown_city"), (8, "unknown_city")]
    assert "Wave 2019" in log.read_text()


def _without_rows(tmp: Path, keep: int, name: str) -> Path:
    lines = _lines_2019()
    partial = tmp / name
    partial.write_text("\n".join(lines[:keep]) + "\n", encoding="utf-8-sig")
    return partial


def test_a_partial_re_delivery_never_replaces_a_good_wave(pipeline_run: PipelineRun) -> None:
    """A copy of the 2019 export that lost its last third loads cleanly row by row; the raw gate sees that it
    would drop respondents and cities the current load has, and says which."""
    paths = copy_state(pipeline_run, "partial")
    lines = _lines_2019()
    partial = _without_rows(paths.var, 40, "city_survey_2019_export_partial.csv")
    paths = with_waves_dir(paths, _waves_with(paths.var, 2019, partial))
    cli.setup(paths)
    published_sha, current_before = _sha(paths.published), _current(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0, log.read_text()[-3000:]
    assert _sha(paths.published) == published_sha and _current(paths) == current_before
    status, message = _latest(paths, 2019)
    assert status == "failed"
    assert "raw_load: expect_column_values_to_be_between on column 'respondents_removed'" in message
    assert f"this load would drop {len(lines) - 40} of the {len(lines) - 1} respondents" in message
    assert "respondent r-" in message and "accept_removals" in message


def test_a_genuine_withdrawal_is_accepted_when_the_spec_says_so(pipeline_run: PipelineRun) -> None:
    """The removal guard's override: the withdrawn respondent is listed in accept_removals; the load passes, and
    fct_answer_corrections marks the removal as accepted."""
    paths = copy_state(pipeline_run, "withdrawal")
    lines = _lines_2019()
    header = lines[0].split(",")
    codebook = Codebook.from_seeds(ROOT / "dbt_project" / "seeds")
    key_roles = {match_key(a.source_label) for a in codebook.answers
                 if a.wave_year == 2019 and a.question_id == "respondent_role" and a.answer_code in codebook.key_roles}
    withdrawn = next(i for i, line in enumerate(lines[1:], start=1)
                     if match_key(line.split(",")[header.index("Asema")]) not in key_roles)
    email = lines[withdrawn].split(",")[header.index("Email")]
    kept = lines[:withdrawn] + lines[withdrawn + 1:]
    corrected = paths.var / "city_survey_2019_export_withdrawn.csv"
    corrected.write_text("\n".join(kept) + "\n", encoding="utf-8-sig")
    reference = "r-" + hashlib.sha256(f"{pseudonym_key()}|{match_key(email)}".encode()).hexdigest()[:8]
    paths = with_waves_dir(paths, _waves_with(paths.var, 2019, corrected, accept_removals=[reference]))
    cli.setup(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code == 0, log.read_text()[-3000:]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        removed = con.execute("select distinct change_type, is_accepted_removal from marts.fct_answer_corrections"
                              ).fetchall()
    assert removed == [("removed", True)]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        accepted = con.execute("select accepted_removals from raw.load_registry where wave_year = 2019 and "
                               "is_current").fetchone()[0]
    assert accepted == reference


def test_a_failed_build_changes_nothing_and_another_wave_then_goes_through(pipeline_run: PipelineRun,
                                                                          tmp_path: Path) -> None:
    """dbt fails after the raw gate passed (a seed change breaks a data test): the candidate load is failed, the
    current load and the published file stay; once the seed is mended, a run of another wave goes through."""
    paths = copy_state(pipeline_run, "failed_build")
    root = paths.var / "project"
    import shutil

    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs",
                                                              "__pycache__", "bi", "tests"))
    from dataclasses import replace

    paths = replace(paths, root=root, waves_config=root / "config" / "waves", dbt_project=root / "dbt_project")
    responsibilities = root / "dbt_project" / "seeds" / "responsibilities.csv"
    original = responsibilities.read_text(encoding="utf-8")
    # a duplicated responsibility code: dbt's unique test on the seed fails during the build
    responsibilities.write_text(original + "it_management,Tietohallinto,IT management (again),true,6\n",
                                encoding="utf-8")
    lines = _lines_2019()
    corrected = paths.var / "city_survey_2019_export_v2.csv"
    corrected.write_text("\n".join(lines + [lines[1].replace("@", ".uusi@", 1)]) + "\n", encoding="utf-8-sig")
    (paths.waves_config / "2019.yml").write_text(
        (paths.waves_config / "2019.yml").read_text(encoding="utf-8").replace(
            "file: data/waves/2019/city_survey_2019_export.csv", f"file: {corrected}"), encoding="utf-8")
    cli.setup(paths)
    published_sha, current_before = _sha(paths.published), _current(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "success" and states["record_failure"] == "success"
    assert "failed" in {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert _sha(paths.published) == published_sha and _current(paths) == current_before
    status, message = _latest(paths, 2019)
    assert status == "failed" and "the run failed at dbt_build." in message

    # the seed is mended and a corrected 2016 file arrives (one more respondent): that run goes through
    responsibilities.write_text(original, encoding="utf-8")
    spec_2016 = yaml.safe_load((paths.waves_config / "2016.yml").read_text(encoding="utf-8"))
    lines_2016 = (ROOT / spec_2016["file"]).read_text(encoding="cp1252").splitlines()
    more = paths.var / "kaupunkikysely_2016_v2.csv"
    more.write_text("\n".join(lines_2016 + [lines_2016[1].replace("@", ".toinen@", 1)]) + "\n", encoding="cp1252")
    spec_2016["file"] = str(more)
    (paths.waves_config / "2016.yml").write_text(yaml.safe_dump(spec_2016, allow_unicode=True), encoding="utf-8")
    cli.setup(paths)
    code, _seconds, log = cli.run_wave(paths, 2016)
    assert code == 0, log.read_text()[-3000:]
    current = _current(paths)
    assert current[2019] == current_before[2019], "the failed 2019 load did not become current"
    assert current[2016] != current_before[2016]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        respondents = dict(con.execute("select wave_year, respondents from marts.dim_year").fetchall())
    assert respondents[2019] == len(lines) - 1, "the published 2019 marts are built from the current load"
    assert respondents[2016] == len(lines_2016), "the 2016 correction is published"


def test_marts_gate_names_the_failed_expectation(pipeline_run: PipelineRun, monkeypatch) -> None:
    paths = copy_state(pipeline_run, "marts_gate")
    use_paths(monkeypatch, paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from marts.fct_city_responsibility where city_wave_id = '2018-091'")
        con.execute("update marts.fct_responsibility_shares set share = 1.5 where wave_year = 2019 "
                    "and responsibility_code = 'it_management'")
    with pytest.raises(quality.QualityGateFailed) as failed:
        quality.run_gate(quality.marts_checkpoint(quality.file_context(paths), "broken", paths), paths)
    message = str(failed.value)
    assert "fct_city_responsibility: expect_table_row_count_to_equal" in message
    assert "fct_responsibility_shares: expect_column_values_to_be_between on column 'share'" in message
    assert "responsibility_share_totals" in message
    assert os.environ["SURVEY_WAREHOUSE_PATH"] == str(paths.warehouse)
