"""The wave's owner is told once when a wave is overdue, through a real SMTP server; without an owner or a mail
connection nothing is sent and the log says why. (The message of a failed run: test_idempotency_and_gate.py; the
receipt of a publication: test_corrected_redelivery.py.)"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, PipelineRun, make_paths
from owner_mail import OWNER, Mailbox, smtp_mailbox

from survey_warehouse.orchestration import runtime
from survey_warehouse.settings import Paths


@pytest.fixture
def mailbox():
    """A real SMTP server on a free local port; Airflow's smtp_default connection points at it."""
    with smtp_mailbox() as box:
        yield box


@pytest.mark.slow
def test_without_an_owner_or_a_connection_nothing_is_sent_and_the_log_says_so(pipeline_run: PipelineRun) -> None:
    """The main job's run (`make run`'s defaults) published every wave, the last run all three at once: one line
    per wave says why no receipt went out, and the runs succeeded."""
    logs = {year: log.read_text(errors="replace") for year, (_code, _s, log) in pipeline_run.outcomes.items()}
    assert all(code == 0 for code, _s, _log in pipeline_run.outcomes.values())
    published_by = logs[2019]  # the run that built and published the waves caught up with it
    assert published_by.count("Notifications are off (no owner_email in the wave spec of") == 3
    for year in (2016, 2018, 2019):
        assert f"not sent: Survey wave {year} published" in published_by, year
        assert "Could not" not in logs[year]
    assert "Notifications are off" not in logs[2016] + logs[2018], "nothing is published before the build"


# --------------------------------------------------------------------------------------------- the overdue check

RUN_OVERDUE = """
import json, sys, pendulum
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("survey_wave_overdue")
states = {}
for day in sys.argv[2:]:
    run = dag.test(logical_date=pendulum.parse(day).replace(hour=8, tzinfo=pendulum.timezone("Europe/Helsinki")))
    states[day] = str(run.state)
print("STATES " + json.dumps(states))
"""


def _run_overdue(paths: Paths, env_extra: dict[str, str], days: list[str]) -> tuple[dict[str, str], str]:
    env = {**runtime.runtime_env(paths), **env_extra}
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", RUN_OVERDUE, str(ROOT / "dags" / "survey_wave_overdue.py"), *days],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    output = done.stdout + done.stderr
    found = re.search(r"^STATES (.*)$", done.stdout, re.MULTILINE)
    assert found, output[-3000:]
    return json.loads(found[1]), output


@pytest.mark.slow
def test_a_wave_not_published_by_its_due_date_is_told_once(manifest: Path, mailbox: Mailbox) -> None:
    """2020 is configured but its file never arrives: nothing before the due date, one reminder after it, and
    none the days after."""
    paths = make_paths("notify_overdue")
    waves = paths.var / "waves"
    waves.mkdir()
    spec = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    spec.update(wave_year=2020, file="data/waves/2020/kaupunkikysely_2020.csv", owner_email=[OWNER])
    (waves / "2020.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    paths = replace(paths, waves_config=waves)
    runtime.setup(paths)

    states, output = _run_overdue(
        paths, {"SURVEY_WAVE_DUE": "06-15"}, ["2020-06-14", "2020-06-15", "2020-06-16", "2020-06-17"]
    )

    assert set(states.values()) == {"success"}, output[-3000:]
    assert len(mailbox.received) == 1, output[-3000:]
    mail = mailbox.received[0]
    print(f"\n--- overdue e-mail ---\nSubject: {mail.subject}\n\n{mail.text}")
    assert mail.recipients == [OWNER]
    assert mail.subject == "Survey wave 2020 has not been published (due 15.06.2020)"
    assert "2020.yml names kaupunkikysely_2020.csv, which has not arrived." in mail.text
    assert "No load of wave 2020 has been attempted." in mail.text
    assert "make run YEARS=2020" in mail.text
    assert "wave 2020 is overdue; its owner was told on" in output, "the day after, it is not told again"


def test_the_due_date_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from survey_warehouse.errors import SurveyWarehouseError
    from survey_warehouse.settings import wave_due_date

    assert str(wave_due_date(2021)) == "2021-07-01"
    monkeypatch.setenv("SURVEY_WAVE_DUE", "09-30")
    assert str(wave_due_date(2021)) == "2021-09-30"
    monkeypatch.setenv("SURVEY_WAVE_DUE", "1 July")
    with pytest.raises(SurveyWarehouseError, match="SURVEY_WAVE_DUE must be a month and a day as MM-DD"):
        wave_due_date(2021)


def test_messages_carry_no_address_and_no_template_syntax() -> None:
    from survey_warehouse.orchestration.notify import Mail, failure_mail

    mail = failure_mail(
        2019,
        ["load_raw_wave"],
        "row 4, column 'Email': 'matti.virtanen@kaupunki.fi' is odd {{ ti }}\n" + "\n".join(f"l{i}" for i in range(30)),
        ["Log: var/logs/x.log"],
    )
    assert "matti.virtanen@kaupunki.fi" not in mail.body and "<e-mail address>" in mail.body
    assert "(17 more lines in the full report)" in mail.body
    assert "{" not in Mail(mail.subject, mail.body).html()
    assert html.unescape(re.sub(r"<[^>]+>", "", mail.html())) == mail.body


@pytest.mark.parametrize("published", [False, True])
@pytest.mark.parametrize("others", [[], ["validate_marts"]])
def test_a_failed_dbt_build_is_named_once_however_many_of_its_steps_failed(published: bool, others: list[str]) -> None:
    """The subject and the Step line name the build once, with how many more of its steps failed, as the run's
    message does: a subject as long whether 3 or 300 of its steps failed."""
    from survey_warehouse.orchestration.notify import failure_mail
    from survey_warehouse.orchestration.pipeline import PRODUCER_TASK_ID

    subjects = []
    for failed in (3, 300):
        dbt = [PRODUCER_TASK_ID, *(f"dbt_build.model_{i}_run" for i in range(failed - 1))]
        mail = failure_mail(2019, sorted([*others, *dbt]), "the run failed at the dbt build", [], published=published)
        step = next(line for line in mail.body.splitlines() if line.startswith("Step: "))
        for text in (mail.subject, step):
            assert text.count("dbt_build.") == 1, text
            assert f"{failed - 1} more dbt_build steps" in text and all(o in text for o in others), text
        subjects.append(mail.subject)
    assert len(subjects[1]) - len(subjects[0]) == len("299") - len("2"), subjects  # only the count is longer


# ----------------------------------------------------- which years are reminded, and a wave spec that is broken

VARIABLE_OWNER = "tietohallinto@example.fi"


class _Variables:
    """Airflow's Variables for the overdue check called outside a task: survey_owner_email and what it remembers."""

    def __init__(self, **values: str) -> None:
        self.values = dict(values)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.fixture
def overdue_waves(monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox) -> Path:
    """A test folder of wave specs (empty), the Variable survey_owner_email set, and the mailbox."""
    from conftest import use_paths, with_waves_dir

    paths = make_paths("notify_years")
    waves = paths.var / "waves"
    waves.mkdir()
    use_paths(monkeypatch, with_waves_dir(paths, waves))
    monkeypatch.setattr("airflow.sdk.Variable", _Variables(survey_owner_email=VARIABLE_OWNER))
    return waves


def _write_spec(waves: Path, year: int, **changes: object) -> Path:
    spec = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    spec.update(wave_year=year, file=f"data/waves/{year}/kaupunkikysely_{year}.csv", owner_email=[OWNER])
    spec.update(changes)
    path = waves / f"{year}.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def _check_on(day: str) -> str:
    import pendulum

    from survey_warehouse.orchestration import notify

    moment = pendulum.parse(day).replace(hour=8, tzinfo=pendulum.timezone("Europe/Helsinki"))
    return notify.check_overdue({"logical_date": moment, "run_id": f"scheduled__{day}"})


def test_only_a_year_with_a_wave_spec_is_reminded(overdue_waves: Path, mailbox: Mailbox) -> None:
    """2017 had no survey (no wave spec): no reminder, though the Variable names an owner. 2020's spec is written,
    its file never came: reminded."""
    _write_spec(overdue_waves, 2020)

    said = _check_on("2017-07-02")

    assert mailbox.received == [], [m.text for m in mailbox.received]
    assert said.startswith("no survey wave in 2017: there is no ") and said.endswith("2017.yml; no reminder"), said

    _check_on("2020-07-02")

    [mail] = mailbox.received
    assert mail.recipients == [OWNER]
    assert mail.subject == "Survey wave 2020 has not been published (due 01.07.2020)"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"wave_year": "2O20"}, "'2O20'"),
        ({"accept_removals": 5}, "accept_removals must be a list"),
        ({"cities_surveyed": 91}, "cities_surveyed must be a list"),
        ({"format": "pdf"}, "format must be one of"),
    ],
    ids=["letter_O_in_the_year", "a_number_for_a_list", "a_number_for_the_cities", "unknown_format"],
)
def test_a_broken_wave_spec_still_reaches_its_owner(
    overdue_waves: Path, mailbox: Mailbox, change: dict, problem: str
) -> None:
    """Whatever is wrong in a spec that parses as YAML, its owner_email is read and told, and the reminder names the
    spec and what is wrong with it."""
    spec = _write_spec(overdue_waves, 2020, **change)

    said = _check_on("2020-07-02")

    assert said == "wave 2020 is overdue; its owner was told"
    [mail] = mailbox.received
    assert mail.recipients == [OWNER], "the spec's owner, not the Variable's"
    assert f"{spec.name} cannot be read" in mail.text, mail.text
    assert problem in mail.text, mail.text
    assert "correct it" in mail.text


def test_a_wave_spec_that_is_not_yaml_is_the_reason_told_to_the_variables_owner(
    overdue_waves: Path, mailbox: Mailbox
) -> None:
    spec = overdue_waves / "2020.yml"
    spec.write_text("wave_year: 2020\nowner_email: [kysely.omistaja@example.fi\nformat: csv\n", encoding="utf-8")

    _check_on("2020-07-02")

    [mail] = mailbox.received
    assert mail.recipients == [VARIABLE_OWNER]
    assert f"{spec.name} cannot be read: not a readable YAML file" in mail.text, mail.text


def test_a_withdrawal_is_told_as_a_withdrawal_never_as_a_publication(monkeypatch) -> None:
    """publish_marts of a run that withdrew its wave: the owner hears the wave left the marts, and why."""
    from types import SimpleNamespace

    from conftest import make_paths, use_paths

    from survey_warehouse.orchestration import notify

    paths = make_paths("notify_withdrawal")
    use_paths(monkeypatch, paths)
    sent: list[tuple[int, notify.Mail]] = []
    monkeypatch.setattr(notify, "deliver", lambda wave, mail, _context, _paths=None: sent.append((wave, mail)))
    monkeypatch.setattr(notify, "_send_receipt", lambda wave, *_a: sent.append((wave, notify.Mail("receipt", ""))))
    published = {"path": str(paths.published), "waves": [], "withdrawn": [2016], "withdrawn_because": "mixed up"}
    ti = SimpleNamespace(task_id="publish_marts", xcom_pull=lambda task_ids: published)

    notify.on_published({"ti": ti, "params": {"wave_year": 2016}})

    assert [(wave, mail.subject) for wave, mail in sent] == [(2016, "Survey wave 2016 withdrawn from the marts")]
    assert "Why: mixed up" in sent[0][1].body and "published" not in sent[0][1].subject


def test_a_build_from_the_current_loads_alone_tells_no_owner(monkeypatch) -> None:
    """`make run` builds the marts from the current loads alone to tell a failing project from a failing wave: that
    run brings no wave in, so neither its publication nor its failure is mailed to the wave's owner."""
    from types import SimpleNamespace

    from conftest import make_paths, use_paths

    from survey_warehouse.orchestration import notify
    from survey_warehouse.orchestration.pipeline import CURRENT_LOADS_ONLY_PARAM

    paths = make_paths("notify_current_loads")
    use_paths(monkeypatch, paths)
    sent: list[int] = []
    monkeypatch.setattr(notify, "deliver", lambda wave, _mail, _context, _paths=None: sent.append(wave))
    monkeypatch.setattr(notify, "_send_receipt", lambda wave, *_a: sent.append(wave))
    published = {"path": str(paths.published), "waves": [2016], "withdrawn": []}
    ti = SimpleNamespace(task_id="publish_marts", xcom_pull=lambda task_ids, key=None: published)
    params = {"wave_year": 2016, CURRENT_LOADS_ONLY_PARAM: True}

    notify.on_published({"ti": ti, "params": params})
    notify.on_run_failed({"ti": ti, "params": params, "exception": RuntimeError("dbt failed")})
    assert sent == []

    notify.on_published({"ti": ti, "params": {"wave_year": 2016}})  # the same, from a wave's own run
    assert sent == [2016]
