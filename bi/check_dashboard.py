"""Open the dashboard in headless Chromium, log in through the form, wait until every chart has rendered, screenshot.

    bi/.venv/bin/python bi/check_dashboard.py --url http://127.0.0.1:8088 --out var/superset/dashboard.png

Runs in Superset's environment (bi/.venv has Playwright's Python package) and drives Debian's chromium
(/usr/bin/chromium; never `playwright install`, browser downloads fail here). Every request that does not go to
Superset itself is aborted (and reported), so nothing leaves the machine. Prints one JSON object (what it saw) and
exits 1 when a chart did not render, showed an error, or a chart-data request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

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


def check(url: str, out: Path, slug: str, username: str, password: str, expected_charts: int | None,
          timeout: float) -> dict:
    from playwright.sync_api import sync_playwright

    report: dict = {"external_requests_blocked": [], "chart_data_responses": [], "console_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})

            def route(r):  # noqa: ANN001, ANN202
                if r.request.url.startswith(url):
                    return r.continue_()
                report["external_requests_blocked"].append(r.request.url)
                return r.abort()

            page.route("**/*", route)
            page.on("response", lambda resp: report["chart_data_responses"].append(
                {"url": resp.url, "status": resp.status}) if "/api/v1/chart/data" in resp.url else None)
            page.on("console", lambda msg: report["console_errors"].append(msg.text[:300])
                    if msg.type == "error" else None)

            started = time.monotonic()
            page.goto(f"{url}/login/")
            page.fill("#username", username)
            page.fill("#password", password)
            page.click('[data-test="login-button"]')
            page.wait_for_url(lambda u: "/login" not in u, timeout=60_000)
            page.goto(f"{url}/superset/dashboard/{slug}/")

            deadline = time.monotonic() + timeout
            stable_since, state = None, {}
            while time.monotonic() < deadline:
                state = page.evaluate(CHART_STATE_JS)
                charts = state["charts"]
                done = (charts and (expected_charts is None or len(charts) >= expected_charts)
                        and state["spinners"] == 0
                        and all((c["rendered"] or c["error"]) and not c["loading"] for c in charts))
                if done:
                    stable_since = stable_since or time.monotonic()
                    if time.monotonic() - stable_since >= 1.5:  # nothing started loading again
                        break
                else:
                    stable_since = None
                page.wait_for_timeout(500)
            report["render_seconds"] = round(time.monotonic() - started, 1)
            report.update(state)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            report["screenshot"] = str(out)
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
    problems += [f"chart data request {r['url']} answered {r['status']}" for r in report["chart_data_responses"]
                 if r["status"] != 200]
    if not report["chart_data_responses"]:
        problems.append("the dashboard made no chart data request")
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
    args = parser.parse_args()
    password = os.environ.get("SUPERSET_ADMIN_PASSWORD") or "admin"
    report = check(args.url.rstrip("/"), args.out, args.slug, args.username, password, args.expected_charts,
                   args.timeout)
    print(json.dumps(report, indent=1))
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
