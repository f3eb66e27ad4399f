"""The wave's owner hears of a failed run (the step, the gate's first lines, where the full report is), gets a
receipt for a publication, and is told once when a wave is overdue; all through a real SMTP server."""

from __future__ import annotations

import csv
import email
import html
import json
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field, replace
from email.message import Message
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import (
    ROOT,
    PipelineRun,
    copy_state,
    current_loads,
    latest_load,
    lines_2019,
    make_paths,
    task_states,
    waves_with_file,
    with_waves_dir,
)

from survey_warehouse import cli, quality
from survey_warehouse.settings import Paths

OWNER = "kysely.omistaja@example.fi"
SENDER = "survey-warehouse@example.fi"
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message
    raw: str = ""

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The body as the owner reads it: the HTML part without its markup."""
        part = next(p for p in self.message.walk() if p.get_content_type() == "text/html")
        return html.unescape(re.sub(r"<[^>]+>", "", part.get_payload(decode=True).decode("utf-8")))


@dataclass
class Mailbox:
    port: int
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.content.decode("utf-8", errors="replace")
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_string(raw), raw))
        return "250 OK"

    def connection(self) -> str:
        """AIRFLOW_CONN_SMTP_DEFAULT for this server (plain SMTP on localhost, no retries)."""
        extra = {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch):
    """A real SMTP server on a free local port; Airflow's smtp_default connection points at it."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox(port)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", box.connection())
    yield box
    controller.stop()


def _personal_data(lines: list[str]) -> set[str]:
    """Every respondent name and e-mail address a wave file holds (2019: columns Nimi and Email)."""
    rows = list(csv.DictReader(lines))
    found = {r[c].strip() for r in rows for c in ("Nimi", "Email") if r.get(c) and r[c].strip()}
    assert len(found) > 40, "the file's names and addresses were read"
    return found


def _assert_no_personal_data(mail: Received, personal: set[str]) -> None:
    text = mail.subject + "\n" + mail.text + "\n" + mail.raw
    leaked = sorted(v for v in personal if v in text)
    assert not leaked, f"personal data in the message: {leaked[:3]}"
    assert not [a for a in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", mail.text) if a not in (OWNER, SENDER)]


def _broken_wave(tmp: Path) -> Path:
    """2019 with an unknown city in 4 rows and an answer missing from the codebook in 2 (over the 5 % limit)."""
    lines = lines_2019()
    header = lines[0].split(",")
    city, lead = header.index("Organisaatio"), header.index(LEAD)
    for line, column, value in [(2, city, "Atlantis"), (3, city, "Atlantis"), (4, lead, "Pormestari")]:
        row = lines[line].split(",")
        row[column] = value
        lines[line] = ",".join(row)
    broken = tmp / "city_survey_2019_export_broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return broken


@pytest.mark.slow
def test_a_failed_gate_tells_the_owner_and_a_publication_sends_a_receipt(
    pipeline_run: PipelineRun, mailbox: Mailbox
) -> None:
    paths = copy_state(pipeline_run, "notify_runs")
    personal = _personal_data(lines_2019())

    # a delivery the raw gate rejects
    broken = _broken_wave(paths.var)
    paths = with_waves_dir(paths, waves_with_file(paths.var, 2019, broken, owner_email=OWNER))
    cli.setup(paths)
    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0 and task_states(paths, 2019)["validate_raw_wave"] == "failed"
    assert len(mailbox.received) == 1, log.read_text()[-3000:]
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
    assert "row 3, column 'Organisaatio': unknown city 'Atlantis'; if it is a way of writing" in mail.text
    assert "city_aliases.csv" in mail.text
    status, message = latest_load(paths, 2019)
    assert status == "failed" and message.splitlines()[1] in mail.text, "the reason the registry keeps"
    assert f"Data Docs: {(paths.data_docs / 'index.html').relative_to(paths.root)}" in mail.text
    assert f"Log: {log}" in mail.text
    _assert_no_personal_data(mail, personal)

    # a corrected re-delivery (one more respondent) is published: a short receipt
    lines = lines_2019()
    corrected = paths.var / "city_survey_2019_export_v2.csv"
    corrected.write_text("\n".join([*lines, lines[1].replace("@", ".uusi@", 1)]) + "\n", encoding="utf-8-sig")
    paths = with_waves_dir(paths, waves_with_file(paths.var, 2019, corrected, owner_email=OWNER))
    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code == 0, log.read_text()[-3000:]
    assert len(mailbox.received) == 2
    receipt = mailbox.received[1]
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
    assert rows == len(lines)
    assert receipt.subject == f"Survey wave 2019 published: {accepted} rows accepted, {quarantined} quarantined"
    assert f"{rows} rows, {accepted} accepted, {quarantined} quarantined" in receipt.text
    assert f"IT-led share: {cities}/{responded} answering cities ({share:.1%})" in receipt.text
    assert f"Published marts: {paths.published.relative_to(paths.root)}" in receipt.text
    _assert_no_personal_data(receipt, personal)


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
    env = {**cli.runtime_env(paths), **env_extra}
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
    cli.setup(paths)

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
    from survey_warehouse.notify import Mail, failure_mail

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
