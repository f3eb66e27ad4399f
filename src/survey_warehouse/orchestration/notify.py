"""Telling a wave's owner: a failed run, a publication, a wave that has not been published by its due date.

The e-mails go through Airflow's SMTP provider (`SmtpNotifier`, connection `smtp_default`), from task callbacks
of the survey_waves DAG (they run in the task's own process, under a scheduler and under `dag.test` alike) and from
the survey_wave_overdue DAG. The owner is the wave spec's `owner_email`, else the Airflow Variable
`survey_owner_email`. Without an owner or without the connection nothing is sent and one log line says so; a
notification that cannot be sent never changes how a run ends.

A message holds the wave, the step, the first lines of the report (the gate's failed expectations, the rows and
what to do) and where the full report is; never a respondent's name or e-mail address (any address-like text from a
report is replaced).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survey_warehouse.settings import Paths, get_paths, smtp_conn_id, wave_due_date

log = logging.getLogger(__name__)

OWNER_VARIABLE = "survey_owner_email"
TOLD_VARIABLE = "survey_wave_overdue_told"  # {"2019": "when the owner was told"}
REPORT_LINES = 14
DAG_ID = "survey_waves"
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:'\"]+@[^\s@<>()\[\],;:'\"]+")


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str

    def html(self) -> str:
        """The body as the HTML part the notifier sends. Braces are written as character references, so the
        notifier's templating sees plain text."""
        text = html.escape(self.body).replace("{", "&#123;").replace("}", "&#125;")
        return f'<pre style="font-family: monospace; white-space: pre-wrap">{text}</pre>'


def scrub(text: str) -> str:
    """No e-mail address from a report reaches a message."""
    return _ADDRESS.sub("<e-mail address>", text)


def first_lines(text: str, n: int = REPORT_LINES) -> str:
    lines = [line.rstrip() for line in scrub(text).splitlines() if line.strip()]
    more = len(lines) - n
    return "\n".join([*lines[:n], *([f"  ... ({more} more lines in the full report)"] if more > 0 else [])])


# ------------------------------------------------------------------------------------------ who, and through what


def owner_of(wave_year: int, paths: Paths) -> tuple[str, ...]:
    """The wave spec's owner_email, read from any spec that parses as YAML however broken the rest of it is, else
    the Variable survey_owner_email (also for a year without a spec, or whose spec does not parse)."""
    import yaml

    from survey_warehouse.intake.waves import owner_emails

    path = paths.waves_config / f"{wave_year}.yml"
    found: tuple[str, ...] = ()
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            found = owner_emails(raw.get("owner_email"), path) if isinstance(raw, dict) else ()
        except Exception as exc:
            log.warning("%s: no usable owner_email (%s); the owner is Variable %s", path, exc, OWNER_VARIABLE)
    if found:
        return found
    try:
        from airflow.sdk import Variable

        value = Variable.get(OWNER_VARIABLE, default=None)
    except Exception:  # outside a task (tools, tests): no Variables to read
        value = None
    if not value:
        return ()
    return owner_emails([v for v in re.split(r"[,;\s]+", str(value)) if v], Path(f"Airflow Variable {OWNER_VARIABLE}"))


def smtp_connection() -> str | None:
    """The SMTP connection's id when it is configured (Airflow connection, e.g. AIRFLOW_CONN_SMTP_DEFAULT)."""
    conn_id = smtp_conn_id()
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:
        return None
    return conn_id


def deliver(wave_year: int, mail: Mail, context: Any, paths: Paths | None = None) -> bool:
    """Send `mail` to the wave's owner through SmtpNotifier; False (and one log line) when notifications are off.
    Sending errors are raised: a callback catches them, the overdue check fails on them."""
    paths = paths or get_paths()
    owners = owner_of(wave_year, paths)
    conn_id = smtp_connection() if owners else None
    if not owners or not conn_id:
        missing = [
            *([] if owners else [f"no owner_email in the wave spec of {wave_year} nor Variable {OWNER_VARIABLE}"]),
            *([] if conn_id or not owners else [f"no Airflow connection {smtp_conn_id()}"]),
        ]
        log.info("Notifications are off (%s): not sent: %s", "; ".join(missing), mail.subject)
        return False
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    SmtpNotifier(
        to=list(owners),
        subject=mail.subject,
        html_content=mail.html(),
        smtp_conn_id=conn_id,
        custom_headers={"X-Survey-Wave": str(wave_year)},
    )(context)
    log.info("Told the owner of wave %s: %s", wave_year, mail.subject)
    return True


# ---------------------------------------------------------------------------------------------------- the messages


def failure_mail(wave_year: int, steps: list[str], message: str, where: list[str], published: bool = False) -> Mail:
    """The run failed; `published`: after its publication had committed (the marts and the wave's load switched).
    The failed steps are named as the message names them (a failed dbt build once)."""
    from survey_warehouse.orchestration.pipeline import steps_named

    step = steps_named(steps) or "an unknown step"
    gate = {"validate_raw_wave": " (the raw gate)", "validate_marts": " (the marts gate)"}
    subject = f"Survey wave {wave_year}: the run failed at {step}" + "".join(gate.get(s, "") for s in steps[:1])
    outcome = "Nothing was published: the published marts and the wave's current load stay as they were."
    if published:
        subject = f"Survey wave {wave_year}: published, but the run failed afterwards at {step}"
        outcome = (
            "The marts were published: readers see them, and the wave's new load is current. What failed came "
            "after that, so the receipt and the exports may not have followed (the next publication exports)."
        )
    body = "\n".join(
        [
            f"Wave: {wave_year}",
            f"Step: {step}",
            outcome,
            "",
            first_lines(message),
            "",
            "The full report:",
            *(f"  {w}" for w in where),
        ]
    )
    return Mail(subject, body)


def receipt_mail(
    wave_year: int, load: tuple | None, headline: tuple | None, where: list[str], after: list[str] | None = None
) -> Mail:
    """The publication's receipt; `after`: what went wrong after it committed (the publication stands)."""
    lines = [f"Wave: {wave_year}", "Step: publish_marts (the marts are published)"]
    subject = f"Survey wave {wave_year} published"
    if load:
        file_name, rows, accepted, quarantined = load
        subject += f": {accepted} rows accepted, {quarantined} quarantined"
        lines.append(f"File: {file_name}: {rows} rows, {accepted} accepted, {quarantined} quarantined")
    if headline:
        cities, responded, surveyed, share, low, high, statement = headline
        lines.append(
            f"IT-led share: {cities}/{responded} answering cities ({share:.1%}); "
            + (
                f"of all {surveyed} surveyed {low:.0%} - {high:.0%}"
                if responded < surveyed
                else f"all {surveyed} surveyed cities answered"
            )
            + (f"; the survey published: {statement}" if statement else "")
        )
    if after:
        lines += ["", "After publishing (the publication stands; the next run tries again):"]
        lines += [f"  {first_lines(problem, 3)}" for problem in after]
    lines += ["", *where]
    return Mail(subject, "\n".join(lines))


def overdue_mail(wave_year: int, due: dt.date, state: list[str], spec: str) -> Mail:
    return Mail(
        f"Survey wave {wave_year} has not been published (due {due:%d.%m.%Y})",
        "\n".join(
            [
                f"Wave: {wave_year}",
                f"Due: {due:%d.%m.%Y}; nothing of the wave has been published.",
                "",
                *state,
                "",
                f"What to do: put the delivered file where {spec} says and run the wave "
                f'(make run YEARS={wave_year}, or trigger survey_waves with {{"wave_year": {wave_year}}}). If '
                f"there is no survey this year, delete {spec}: only a year with a wave spec is reminded. This "
                "reminder is sent once.",
            ]
        ),
    )


# ------------------------------------------------------------------------------------------- the DAG's callbacks


def _log_location(context: Any, step: str) -> str:
    run_log = os.environ.get("SURVEY_RUN_LOG")  # `make run`: the whole DAG run's log
    if run_log:
        return f"Log: {run_log}"
    from urllib.parse import quote

    from airflow.sdk import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"Log of {step}: {base}/dags/{DAG_ID}/runs/{quote(context['run_id'])}/tasks/{step}"


def _report_locations(context: Any, paths: Paths, steps: list[str], load_id: str | None) -> list[str]:
    from survey_warehouse import quality

    where = []
    if load_id and "validate_raw_wave" in steps:
        where.append(f"Gate report: {paths.shown(quality.report_path(paths, 'raw_wave', load_id))}")
    if "validate_marts" in steps:
        reports = sorted((paths.var / "quality" / "reports" / "marts").glob("*.json"), key=lambda p: p.stat().st_mtime)
        if reports:
            where.append(f"Gate report: {paths.shown(reports[-1])}")
    if {"validate_raw_wave", "validate_marts"} & set(steps):
        where.append(f"Data Docs: {paths.shown(paths.data_docs / 'index.html')}")
    if load_id:
        where.append(f"Load registry: raw.load_registry, load_id = '{load_id}' (status_message)")
    where.append(_log_location(context, steps[0] if steps else "record_failure"))
    return where


def _current_loads_only(context: Any) -> bool:
    """A run that builds the marts from the current loads alone (`make run` telling whether a failed build comes
    from a wave's data) brings no wave in: no owner hears of it (its outcome is in `make run`'s own output)."""
    from survey_warehouse.orchestration.pipeline import CURRENT_LOADS_ONLY_PARAM

    if (context.get("params") or {}).get(CURRENT_LOADS_ONLY_PARAM):
        log.info("A build from the current loads alone: no owner is told")
        return True
    return False


def on_run_failed(context: Any) -> None:
    """record_failure's on_success_callback (it has the reason), and the on_failure_callback of publish_marts and
    of record_failure itself: the owner hears why the run failed."""
    from survey_warehouse.orchestration import pipeline

    if _current_loads_only(context):
        return
    try:
        ti = context["ti"]
        wave_year = pipeline.wave_year_of_run(context)
        steps = pipeline._failed_steps(context)
        exception = context.get("exception")
        if ti.task_id == "record_failure" and exception is None:
            message = ti.xcom_pull(task_ids=ti.task_id) or ""
        else:  # the task's own failure
            steps = sorted({*steps, ti.task_id})
            error = ti.xcom_pull(task_ids=ti.task_id, key="error") or (
                f"{type(exception).__name__}: {exception}"
                if exception is not None
                else "the task stopped without an error of its own (killed, or its worker was lost); see its log"
            )
            message = f"the run failed at {', '.join(steps)}: {error}"
        loaded = ti.xcom_pull(task_ids=pipeline.LOAD_TASK_ID)
        load_id = loaded["load_id"] if loaded and not loaded.get("unchanged") else None
        paths = get_paths()
        where = _report_locations(context, paths, steps, load_id)
        mail = failure_mail(wave_year, steps, message, where, published=_run_published(context, paths))
        deliver(wave_year, mail, context, paths)
    except Exception:
        log.exception("Could not tell the owner that the run failed")


def _run_published(context: Any, paths: Paths) -> bool:
    """Whether the run's build was published (the run failed after its publication committed: publish_marts killed
    after the switch, say). The warehouse's record of the build says so, not the task's state."""
    from survey_warehouse.orchestration import pipeline
    from survey_warehouse.warehouse import Session, Warehouse

    build = pipeline._build_of_run(context)
    if build is None:
        return False
    try:
        with Session(Warehouse.from_env(paths.warehouse), read_only=True) as session:
            row = session.execute("select status from raw.builds where build_id = ?", [build.build_id]).fetchone()
    except Exception:
        log.warning("Could not read whether build %s was published", build.build_id, exc_info=True)
        return False
    return row is not None and row[0] == "published"


def _published_figures(wave_year: int, paths: Paths) -> tuple[tuple | None, tuple | None]:
    from survey_warehouse.operations import summary
    from survey_warehouse.warehouse import Session, Warehouse

    warehouse = Warehouse.from_env(paths.warehouse)
    with Session(warehouse, read_only=True) as session:
        load = session.execute(
            "select file_name, row_count, accepted_count, quarantined_count from raw.load_registry "
            "where wave_year = ? and is_current",
            [wave_year],
        ).fetchone()
    headline = next((r for r in summary._headline(warehouse, paths) if r[0] == wave_year), None)
    return load, (tuple(headline[i] for i in (1, 2, 3, 4, 5, 6, 9)) if headline else None)


def on_published(context: Any) -> None:
    """publish_marts' on_success_callback: a short receipt for each wave the publication brought in (the run's own
    wave, and the waves a catch-up built with it)."""
    from survey_warehouse.orchestration import pipeline

    if _current_loads_only(context):
        return
    try:
        paths = get_paths()
        published = context["ti"].xcom_pull(task_ids=context["ti"].task_id) or {}
        withdrawn = set(published.get("withdrawn") or [])
        waves = sorted({pipeline.wave_year_of_run(context), *published.get("waves", [])} - withdrawn)
    except Exception:
        log.exception("Could not send the owner the publication's receipt")
        return
    for wave_year in sorted(withdrawn):
        try:
            deliver(wave_year, withdrawal_mail(wave_year, published, paths), context, paths)
        except Exception:
            log.exception("Could not send the owner the withdrawal's receipt")
    for wave_year in waves:
        _send_receipt(wave_year, published, context, paths)


def withdrawal_mail(wave_year: int, published: dict[str, Any], paths: Paths) -> Mail:
    """A wave left out of the marts (its spec's `withdrawn`): said as such, with the reason, never as published."""
    why = published.get("withdrawn_because") or "(no reason recorded)"
    body = "\n".join(
        [
            f"Wave: {wave_year}",
            "Step: publish_marts (the marts were published without this wave)",
            f"Why: {why}",
            f"The wave's answers are no longer in the marts, the exports or the dashboard. To publish it again, "
            f"remove `withdrawn:` from its wave spec and run it (make run YEARS={wave_year}).",
            "",
            f"Published marts: {paths.shown(Path(published.get('path', paths.published)))}",
        ]
    )
    return Mail(f"Survey wave {wave_year} withdrawn from the marts", body)


def _send_receipt(wave_year: int, published: dict[str, Any], context: Any, paths: Paths) -> None:
    try:
        try:
            load, headline = _published_figures(wave_year, paths)
        except Exception as exc:  # the receipt still goes out, without the figures
            log.warning("Could not read the published figures for the receipt: %s", exc)
            load = headline = None
        where = [
            f"Published marts: {paths.shown(Path(published.get('path', paths.published)))}",
            f"Data Docs: {paths.shown(paths.data_docs / 'index.html')}",
        ]
        mail = receipt_mail(wave_year, load, headline, where, published.get("warnings"))
        deliver(wave_year, mail, context, paths)
    except Exception:
        log.exception("Could not send the owner the publication's receipt")


# ------------------------------------------------------------------------------------------ a wave that is overdue


def _local_day(context: Any) -> dt.date:
    import pendulum

    moment = context.get("logical_date") or context.get("data_interval_end") or pendulum.now("UTC")
    return pendulum.instance(moment).in_timezone("Europe/Helsinki").date()


def expects_wave(wave_year: int, paths: Paths) -> bool:
    """A year has a survey wave when its wave spec exists (config/waves/<year>.yml, written when the survey is run,
    before its file arrives); a year without one (2017) is not reminded of anything."""
    return (paths.waves_config / f"{wave_year}.yml").exists()


def wave_state(wave_year: int, paths: Paths) -> tuple[bool, list[str]]:
    """Whether the wave is published (its load is current), and what is known of it, for the reminder."""
    from survey_warehouse.errors import SurveyWarehouseError
    from survey_warehouse.operations import summary
    from survey_warehouse.orchestration.pipeline import read_wave_spec
    from survey_warehouse.warehouse import Session, Warehouse

    spec_path = paths.waves_config / f"{wave_year}.yml"
    state = []
    try:
        spec = read_wave_spec(wave_year, paths)
        if spec is not None and not spec.file.is_file():
            state.append(f"{paths.shown(spec_path)} names {spec.file.name}, which has not arrived.")
    except SurveyWarehouseError as exc:
        state.append(first_lines(str(exc), 3))
    warehouse = Warehouse.from_env(paths.warehouse)
    loads: list[tuple] = []
    if summary._warehouse_exists(warehouse):
        with Session(warehouse, read_only=True) as session:
            loads = session.execute(
                "select is_current, file_name, status, status_message, loaded_at from raw.load_registry "
                "where wave_year = ? order by loaded_at desc",
                [wave_year],
            ).fetchall()
    if any(r[0] for r in loads):
        return True, state
    if loads:
        _current, file_name, status, message, loaded_at = loads[0]
        state.append(f"Latest load ({file_name}, {loaded_at:%d.%m.%Y %H:%M} UTC): {status}")
        state += [f"  {line}" for line in first_lines(message or "", 8).splitlines()]
    else:
        state.append(f"No load of wave {wave_year} has been attempted.")
    return False, state


def check_overdue(context: Any) -> str:
    """The survey_wave_overdue DAG's task: after the due date, the owner of a wave that is expected this year (its
    wave spec exists) and not published is told, once."""
    from airflow.sdk import Variable

    day = _local_day(context)
    year = day.year
    paths = get_paths()
    if not expects_wave(year, paths):
        return f"no survey wave in {year}: there is no {paths.shown(paths.waves_config / f'{year}.yml')}; no reminder"
    due = wave_due_date(year)
    if day <= due:
        return f"wave {year} is due by {due:%d.%m.%Y}: not overdue yet"
    published, state = wave_state(year, paths)
    if published:
        return f"wave {year} is published"
    told = json.loads(Variable.get(TOLD_VARIABLE, default="{}"))
    if str(year) in told:
        return f"wave {year} is overdue; its owner was told on {told[str(year)]}"
    mail = overdue_mail(year, due, state, paths.shown(paths.waves_config / f"{year}.yml"))
    if not deliver(year, mail, context, paths):
        return f"wave {year} is overdue; notifications are off"
    told[str(year)] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    Variable.set(TOLD_VARIABLE, json.dumps(told))
    return f"wave {year} is overdue; its owner was told"
