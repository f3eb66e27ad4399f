"""Open the dashboard in headless Chromium, log in through the form, wait until every chart has rendered, screenshot;
optionally pick a region in the native filter Region and report what the charts show then.

    bi/.venv/bin/python bi/check_dashboard.py --url http://127.0.0.1:8088 --out var/superset/dashboard.png \
        [--region Uusimaa]

Runs in Superset's environment (bi/.venv has Playwright's Python package) and drives Debian's chromium
(/usr/bin/chromium; never `playwright install`, browser downloads fail here). Every request that does not go to
Superset itself is aborted (and reported), so nothing leaves the machine. Prints one JSON object (what it saw) and
exits 1 when a chart did not render, showed an error, or a chart-data request failed.

What the JSON holds besides the charts' state: `chart_data`, the rows each chart's data request returned as the
browser saw them (by slice id, with the filters the dashboard applied), `page_text` (the text of the dashboard) and,
with --region, `region`: the same after the region was picked in the filter bar and applied, the city table's rows
as rendered, and a second screenshot (<out>_region.png).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Evaluated in the page: the state of every chart on the dashboard.
CHART_STATE_JS = """() => {
  const holders = [...document.querySelectorAll('[data-test="chart-grid-component"]')];
  return {
    spinners: document.querySelectorAll('[data-test="loading-indicator"], .loading').length,
    charts: holders.map(h => ({
      title: (h.querySelector('[data-test="editable-title"]') || h.querySelector('[data-test="slice-header"]')
              || {innerText: ''}).innerText.trim(),
      rendered: !!h.querySelector('canvas, svg, table'),
      rows: h.querySelectorAll('tbody tr').length,
      error: [...h.querySelectorAll('.ant-alert-error, .ant-alert-warning, [data-test="error-tooltip"], [role="alert"]')]
             .map(e => e.innerText.trim()).join(' | '),
      loading: !!h.querySelector('[data-test="loading-indicator"], .loading'),
    })),
  };
}"""

# The cells of a table chart as rendered (first cell of each body row is enough to tell the rows apart).
TABLE_CELLS_JS = """(title) => {
  const holder = [...document.querySelectorAll('[data-test="chart-grid-component"]')].find(h =>
    ((h.querySelector('[data-test="editable-title"]') || h.querySelector('[data-test="slice-header"]')
      || {innerText: ''}).innerText.trim()) === title)
    || [...document.querySelectorAll('[data-test="chart-grid-component"]')].find(h => h.innerText.includes(title));
  if (!holder) return null;
  return [...holder.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()));
}"""

DASHBOARD_TEXT_JS = """() => {
  const grid = document.querySelector('[data-test="dashboard-content-wrapper"]')
               || document.querySelector('.dashboard-content') || document.body;
  return grid.innerText;
}"""


def _wait_until_rendered(
    page, expected_charts: int | None, timeout: float, since: float | None = None, responses: list | None = None
) -> dict:
    """Poll until every chart has rendered (or shows an error), nothing loads, and that has held for 1.5 s. With
    `since`, also wait for at least one chart-data response after that moment."""
    deadline = time.monotonic() + timeout
    stable_since, state = None, {}
    while time.monotonic() < deadline:
        state = page.evaluate(CHART_STATE_JS)
        charts = state["charts"]
        done = (
            charts
            and (expected_charts is None or len(charts) >= expected_charts)
            and state["spinners"] == 0
            and all((c["rendered"] or c["error"]) and not c["loading"] for c in charts)
            and (since is None or any(r["at"] >= since for r in responses or []))
        )
        if done:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 1.5:  # nothing started loading again
                break
        else:
            stable_since = None
        page.wait_for_timeout(500)
    return state


def _chart_data_since(responses: list[dict], since: float) -> dict[str, dict]:
    """The latest chart-data response of each chart (by slice id) received after `since`."""
    out: dict[str, dict] = {}
    for r in responses:
        if r["at"] >= since and r.get("slice_id") is not None:
            out[str(r["slice_id"])] = {k: r.get(k) for k in ("filters", "colnames", "data", "status")}
    return out


def pick_region(page, region: str) -> None:
    """Choose `region` in the native filter Region (a multi-select in the vertical filter bar) and apply it."""
    select = page.locator('[data-test="NATIVE_FILTER-region"]')
    select.click()
    page.locator("#NATIVE_FILTER-region").fill(region)
    option = page.locator(f'.ant-select-dropdown:visible [title="{region}"]').first
    option.wait_for(state="visible", timeout=20_000)
    option.click()
    page.keyboard.press("Escape")
    apply = page.locator('[data-test="filter-bar__apply-button"]')
    apply.wait_for(state="visible", timeout=10_000)
    page.wait_for_function(
        "() => { const b = document.querySelector('[data-test=\"filter-bar__apply-button\"]');"
        " return b && !b.disabled; }",
        timeout=20_000,
    )
    apply.click()


def _log_in(page, url: str, username: str, password: str, attempts: int = 3) -> int:
    """Log in through Superset's login form; the attempts it took.

    The form is a React page: on a busy machine, a field filled before the page has hydrated is emptied again when
    it does, and the form posts without it (Superset shows the login page again, and the URL never leaves /login).
    So each attempt waits for the page to settle, checks that both fields hold what was typed, and a submission that
    stays on /login is tried again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, attempts + 1):
        page.goto(f"{url}/login/")
        with contextlib.suppress(PlaywrightTimeout):  # a page that keeps a request open still has its form
            page.wait_for_load_state("networkidle", timeout=60_000)
        user, secret = page.locator("#username"), page.locator("#password")
        user.wait_for(state="visible", timeout=120_000)
        user.fill(username)
        secret.fill(password)
        if user.input_value() != username or secret.input_value() != password:
            continue
        page.click('[data-test="login-button"]')
        try:
            # the first login of a new Superset can take over a minute on a busy 2-core machine
            page.wait_for_url(lambda u: "/login" not in u, timeout=90_000)
            return attempt
        except PlaywrightTimeout:
            continue
    raise RuntimeError(f"{url}/login/: still on the login page after {attempts} attempts as {username}")


def check(
    url: str,
    out: Path,
    slug: str,
    username: str,
    password: str,
    expected_charts: int | None,
    timeout: float,
    region: str | None = None,
) -> dict:
    from playwright.sync_api import sync_playwright

    report: dict = {"external_requests_blocked": [], "chart_data_responses": [], "console_errors": []}
    responses: list[dict] = []  # every chart-data response with what it asked and what it got

    def on_response(resp) -> None:
        if "/api/v1/chart/data" not in resp.url:
            return
        report["chart_data_responses"].append({"url": resp.url, "status": resp.status})
        entry: dict = {"at": time.monotonic(), "status": resp.status}
        try:
            request = json.loads(resp.request.post_data or "{}")
            entry["slice_id"] = (request.get("form_data") or {}).get("slice_id")
            entry["filters"] = [f for q in request.get("queries") or [] for f in q.get("filters") or []]
            result = (resp.json().get("result") or [{}])[0]
            entry["colnames"], entry["data"] = result.get("colnames"), result.get("data")
        except Exception as exc:
            entry["error"] = str(exc)[:300]
        responses.append(entry)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})

            def route(r):
                if r.request.url.startswith(url):
                    return r.continue_()
                report["external_requests_blocked"].append(r.request.url)
                return r.abort()

            page.route("**/*", route)
            page.on("response", on_response)
            page.on(
                "console", lambda msg: report["console_errors"].append(msg.text[:300]) if msg.type == "error" else None
            )

            started = time.monotonic()
            report["login_attempts"] = _log_in(page, url, username, password)
            opened = time.monotonic()
            page.goto(f"{url}/superset/dashboard/{slug}/")

            state = _wait_until_rendered(page, expected_charts, timeout)
            report["render_seconds"] = round(time.monotonic() - started, 1)
            report.update(state)
            report["chart_data"] = _chart_data_since(responses, opened)
            report["page_text"] = page.evaluate(DASHBOARD_TEXT_JS)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            report["screenshot"] = str(out)

            if region:
                picked = time.monotonic()
                pick_region(page, region)
                region_state = _wait_until_rendered(page, expected_charts, timeout, since=picked, responses=responses)
                city_title = next(
                    (
                        c["title"]
                        for c in [*state["charts"], *region_state["charts"]]
                        if c["title"].startswith("City history")
                    ),
                    None,
                )
                region_shot = out.with_name(f"{out.stem}_region{out.suffix}")
                page.screenshot(path=str(region_shot), full_page=True)
                report["region"] = {
                    "name": region,
                    "charts": region_state["charts"],
                    "spinners": region_state["spinners"],
                    "chart_data": _chart_data_since(responses, picked),
                    "city_table_cells": page.evaluate(TABLE_CELLS_JS, city_title) if city_title else None,
                    "screenshot": str(region_shot),
                }
        finally:
            browser.close()

    charts = report.get("charts", [])
    problems = []
    if expected_charts is not None and len(charts) != expected_charts:
        problems.append(f"{len(charts)} charts on the dashboard, expected {expected_charts}")
    problems += [f"chart {c['title']!r} did not render" for c in charts if not c["rendered"]]
    problems += [f"chart {c['title']!r} shows an error: {c['error']}" for c in charts if c["error"]]
    if report.get("spinners"):
        problems.append(f"{report['spinners']} loading indicators still spinning after {timeout:.0f} s")
    problems += [
        f"chart data request {r['url']} answered {r['status']}"
        for r in report["chart_data_responses"]
        if r["status"] != 200
    ]
    if not report["chart_data_responses"]:
        problems.append("the dashboard made no chart data request")
    if region:
        after = report.get("region", {})
        problems += [
            f"with region {region!r}: chart {c['title']!r} shows an error: {c['error']}"
            for c in after.get("charts", [])
            if c["error"] or not c["rendered"]
        ]
        if not after.get("chart_data"):
            problems.append(f"picking region {region!r} made no chart data request")
    report["problems"] = problems
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8088")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--slug", default="who-leads-digitalisation")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--expected-charts", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--region", help="pick this region in the native filter Region, apply, report again")
    args = parser.parse_args()
    password = os.environ.get("SUPERSET_ADMIN_PASSWORD") or "admin"
    report = check(
        args.url.rstrip("/"),
        args.out,
        args.slug,
        args.username,
        password,
        args.expected_charts,
        args.timeout,
        args.region,
    )
    print(json.dumps(report, indent=1, ensure_ascii=False))
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
