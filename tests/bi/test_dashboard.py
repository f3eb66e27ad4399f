"""Superset (its own environment, bi/.venv) on the published marts, with the dashboard imported from bi/dashboards/.

Starts bi/run_superset.py as a subprocess in its own process group (state in var/tests/superset), waits for
/health, checks through Superset's chart-data API that every chart has the three waves and that the IT-led shares
are those of the published file, opens the dashboard in headless Chromium until every chart has rendered (screenshot
in var/tests/superset/dashboard.png), checks that a new load renamed over the published file shows up without a
restart, and stops Superset's whole process group at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import ROOT, PipelineRun, make_paths

BI = ROOT / "bi"
BI_PYTHON = BI / ".venv" / "bin" / "python"
UV = ROOT / ".tools" / "bin" / "uv"
SLUG = "who-leads-digitalisation"
WAVES = {"2016", "2018", "2019"}
ADMIN_PASSWORD = "test-admin-password"  # noqa: S105
STARTUP_TIMEOUT = 420


def dashboard_chart_count() -> int:
    (dashboard,) = (BI / "dashboards" / "dashboards").glob("*.yaml")
    position = yaml.safe_load(dashboard.read_text())["position"]
    return sum(1 for node in position.values() if isinstance(node, dict) and node.get("type") == "CHART")


def ensure_bi_env() -> None:
    """bi/.venv from bi/uv.lock, as `make dashboard` builds it."""
    if BI_PYTHON.exists():
        return
    env = dict(os.environ)
    if shutil.which("python3.11"):
        env["UV_PYTHON"] = "python3.11"
    started = time.monotonic()
    done = subprocess.run([str(UV), "sync", "--frozen", "--quiet", "--project", str(BI)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    print(f"bi/.venv installed in {time.monotonic() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (run_superset.py, gunicorn and its worker), SIGKILL if it lingers."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(pgid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.3)
    process.poll()


@dataclass
class Superset:
    url: str
    var: Path
    published: Path
    log: Path
    startup_seconds: float

    def api(self, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:2000]

    def login(self) -> str:
        status, body = self.api("POST", "/api/v1/security/login",
                                body={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"})
        assert status == 200, body
        return body["access_token"]


@pytest.fixture(scope="module")
def superset(pipeline_run: PipelineRun) -> Iterator[Superset]:
    ensure_bi_env()
    paths = make_paths("superset")
    # Superset reads its own copy of the published file, so the test can rename a new load over it (as the
    # pipeline does) without touching the session's pipeline run.
    published = paths.var / "published" / "survey_marts.duckdb"
    published.parent.mkdir(parents=True)
    shutil.copy2(pipeline_run.paths.published, published)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"SURVEY_VAR_DIR": str(paths.var), "SURVEY_PUBLISHED_PATH": str(published),
                "SUPERSET_ADMIN_PASSWORD": ADMIN_PASSWORD, "SURVEY_ENV": "development"})
    log = paths.var / "run_superset.out"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen([str(BI_PYTHON), str(BI / "run_superset.py"), "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if process.poll() is not None:
                pytest.fail(f"run_superset.py exited with {process.returncode}:\n{log.read_text()[-4000:]}\n"
                            f"see {paths.var / 'superset' / 'superset.log'}")
            if time.monotonic() - started > STARTUP_TIMEOUT:
                pytest.fail(f"Superset did not start within {STARTUP_TIMEOUT} s:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        startup = time.monotonic() - started
        print(f"\nSuperset start-up (db upgrade, init, admin, import, server until /health): {startup:.1f} s")
        (paths.var / "startup_seconds.txt").write_text(f"{startup:.1f}\n")
        yield Superset(url, paths.var, published, log, startup)
    finally:
        stop_group(process)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the whole group is gone


def published_it_led(path: Path) -> dict[str, float]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {str(y): s for y, s in con.execute(
            "select wave_year, share from marts.fct_responsibility_shares where is_it_management").fetchall()}


def chart_data(superset: Superset, token: str) -> dict[str, dict]:
    status, charts = superset.api("GET", f"/api/v1/dashboard/{SLUG}/charts", token)
    assert status == 200, charts
    out = {}
    for chart in charts["result"]:
        status, body = superset.api("GET", f"/api/v1/chart/{chart['id']}/data/", token)
        assert status == 200, f"{chart['slice_name']}: {body}"
        out[chart["slice_name"]] = body["result"][0]
    return out


def test_charts_carry_the_waves_and_the_published_it_led_shares(superset: Superset,
                                                                pipeline_run: PipelineRun) -> None:
    token = superset.login()
    data = chart_data(superset, token)
    assert len(data) == dashboard_chart_count()
    for name, result in data.items():
        assert result["rowcount"] > 0, f"{name}: no rows"
        assert "wave" in result["colnames"], f"{name}: no wave column"
        assert {str(r["wave"]) for r in result["data"]} == WAVES, name

    expected = published_it_led(pipeline_run.paths.published)
    assert set(expected) == WAVES
    beside = data["IT-led share beside the published statement"]["data"]
    assert {r["wave"]: r["it_led_share"] for r in beside} == pytest.approx(expected, abs=1e-12)
    bars = data["Who leads digitalisation - share of responding cities by wave"]["data"]
    metric = "Share of responding cities"
    assert {r["wave"]: r[metric] for r in bars if r["responsibility_label_en"] == "IT management"} == \
        pytest.approx(expected, abs=1e-12)
    for wave in WAVES:  # the shares of each wave add up to 1
        assert sum(r[metric] for r in bars if r["wave"] == wave) == pytest.approx(1.0)

    with duckdb.connect(str(pipeline_run.paths.published), read_only=True) as con:
        statements = {str(y): s for y, s in con.execute(
            "select wave_year, published_it_led_statement_en from marts.dim_year").fetchall()}
    assert {r["wave"]: r["published_statement_en"] for r in beside} == \
        {w: s or "-" for w, s in statements.items()}


def test_dashboard_renders_every_chart_in_chromium(superset: Superset) -> None:
    chromium = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        reason = f"{chromium} is missing (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide it")
        pytest.skip(reason)
    screenshot = superset.var / "dashboard.png"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"SUPERSET_ADMIN_PASSWORD": ADMIN_PASSWORD, "CHROMIUM": str(chromium)})
    done = subprocess.run([str(BI_PYTHON), str(BI / "check_dashboard.py"), "--url", superset.url, "--out",
                           str(screenshot), "--slug", SLUG, "--expected-charts", str(dashboard_chart_count()),
                           "--timeout", "180"], env=env, capture_output=True, text=True, timeout=400, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check_dashboard.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"\ndashboard rendered in {report.get('render_seconds')} s (login included); screenshot {screenshot}")
    assert report["problems"] == [], report
    assert done.returncode == 0
    assert len(report["charts"]) == dashboard_chart_count()
    assert all(c["rendered"] and not c["error"] for c in report["charts"])
    assert report["external_requests_blocked"] == [], "the dashboard tried to reach another host"
    assert screenshot.exists() and screenshot.stat().st_size > 20_000


def test_a_new_load_renamed_over_the_published_file_shows_without_restart(superset: Superset) -> None:
    """The pipeline publishes by renaming a new file over the old one: the next query must read the new file."""
    token = superset.login()
    before = chart_data(superset, token)["IT-led share beside the published statement"]["data"]
    assert all(r["published_statement_en"] != "changed by the test" for r in before)

    new = superset.published.with_name(".survey_marts.duckdb.test.tmp")
    shutil.copy2(superset.published, new)
    with duckdb.connect(str(new)) as con:
        con.execute("update marts.dim_year set published_it_led_statement_en = 'changed by the test' "
                    "where wave_year = 2019")
    os.replace(new, superset.published)

    after = chart_data(superset, token)["IT-led share beside the published statement"]["data"]
    assert {r["wave"]: r["published_statement_en"] for r in after}["2019"] == "changed by the test"
    # and Superset never opened the file for writing: a writer can still lock it right now
    with duckdb.connect(str(superset.published)) as con:
        assert con.execute("select count(*) from marts.dim_year").fetchone()[0] == len(WAVES)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s"]))
