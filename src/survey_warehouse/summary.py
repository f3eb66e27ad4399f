"""The summary printed after a run: per wave what was loaded and gated, the headline beside the published one."""

from __future__ import annotations

from pathlib import Path

import duckdb

from survey_warehouse import quality
from survey_warehouse.settings import Paths
from survey_warehouse.waves import find_wave_spec

EXAMPLE_QUERY = """\
select y.wave_year, r.responsibility_label_en, s.cities, s.cities_responded,
       round(100 * s.share, 1) as share_pct,
       round(100 * s.share_ci_lower_95, 1) as ci_low_pct, round(100 * s.share_ci_upper_95, 1) as ci_high_pct
from marts.fct_responsibility_shares s
join marts.dim_responsibility r using (responsibility_code)
join marts.dim_year y using (wave_year)
where s.cities > 0
order by y.wave_year, s.share desc;"""


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _latest_report(directory: Path) -> quality.GateReport | None:
    reports = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.exists() else []
    return quality.GateReport.read(reports[-1]) if reports else None


def print_summary(paths: Paths, outcomes: dict[int, dict[str, object]]) -> None:
    print("\n=== Survey warehouse: summary ===")
    if not paths.warehouse.exists():
        print(f"No warehouse yet at {paths.warehouse}: run `make run`.")
        return
    with duckdb.connect(str(paths.warehouse), read_only=True) as wh:
        loads = {r[0]: r[1:] for r in wh.execute(
            "select wave_year, load_id, file_name, row_count, status, accepted_count, quarantined_count "
            "from raw.load_registry where is_current or status in ('pending', 'failed') "
            "order by wave_year, loaded_at").fetchall()}
    years = sorted(set(outcomes) | set(loads))
    print("\nWaves")
    print(f"  {'wave':<6}{'raw rows':>9}{'accepted':>10}{'quarantined':>13}  {'raw gate':<30}{'file'}")
    for year in years:
        if year not in loads:
            why = "no wave spec" if find_wave_spec(year, paths) is None else "not loaded"
            print(f"  {year:<6}{'-':>9}{'-':>10}{'-':>13}  {'run skipped: ' + why:<30}")
            continue
        load_id, file_name, rows, status, accepted, quarantined = loads[year]
        report_file = quality.report_path(paths, "raw_wave", load_id)
        gate = (quality.GateReport.read(report_file) if report_file.exists() else None)
        gate_text = (f"{'passed' if gate.success else 'FAILED'} ({gate.evaluated - len(gate.failures)}"
                     f"/{gate.evaluated} expectations)") if gate else status
        print(f"  {year:<6}{rows:>9}{accepted:>10}{quarantined:>13}  {gate_text:<30}{file_name}")
        if gate and not gate.success:
            for line in gate.message().splitlines()[1:]:
                print(f"        {line.strip()}")

    marts_gate = _latest_report(paths.var / "quality" / "reports" / "marts")
    if marts_gate:
        print(f"\nMarts gate (latest run): {marts_gate.message().splitlines()[0].split(': ', 1)[1]}")

    if not paths.published.exists():
        print("\nNothing published yet: the marts have not passed their gate.")
        return
    with duckdb.connect(str(paths.published), read_only=True) as pub:
        headline = pub.execute(
            "select y.wave_year, s.cities, s.cities_responded, s.share, s.share_ci_lower_95, s.share_ci_upper_95, "
            "y.published_it_led_statement_en, y.published_it_led_share_min_exclusive, "
            "y.published_it_led_share_max_inclusive "
            "from marts.fct_responsibility_shares s join marts.dim_year y using (wave_year) "
            "where s.is_it_management order by 1").fetchall()
        published_at, load_ids = pub.execute("select published_at, load_ids from marts.publication").fetchone()
        example = pub.execute(EXAMPLE_QUERY).fetchall()
    print("\nWho leads digitalisation: share of responding cities where IT management leads (published marts)")
    print(f"  {'wave':<6}{'IT-led':>8}{'share':>8}   {'95 % interval':<16}{'published statement':<22}{'in range'}")
    for year, cities, responded, share, lo, hi, statement, lo_pub, hi_pub in headline:
        in_range = "-" if lo_pub is None else ("yes" if lo_pub < share <= hi_pub else "NO")
        print(f"  {year:<6}{f'{cities}/{responded}':>8}{share:>8.1%}   {f'{lo:.0%} - {hi:.0%}':<16}"
              f"{statement or '-':<22}{in_range}")

    root = paths.root
    print("\nWhere to look")
    print(f"  Published marts (what BI and analysts read): {_rel(paths.published, root)}")
    print(f"      published {published_at:%Y-%m-%d %H:%M:%S} UTC from loads {', '.join(load_ids)}")
    print(f"  Warehouse (raw, staging, intermediate, marts): {_rel(paths.warehouse, root)}")
    print(f"  Data Docs (Great Expectations results): {_rel(paths.data_docs / 'index.html', root)}")
    print(f"  Logs: {_rel(paths.var / 'logs', root)}/   dbt docs: make docs")
    print("  Quarantined rows, with the reason and the file's row and column: table raw.quarantine in the warehouse")
    print("\nAn example query on the published marts (python: duckdb.connect(path, read_only=True)):")
    print("  " + EXAMPLE_QUERY.replace("\n", "\n  "))
    print(f"  -> {len(example)} rows, first: {example[0] if example else '-'}")
