"""`wave draft FILE --year YEAR`: the command line of the draft (see survey_warehouse.drafting.draft).

Prints the decisions left to a person, or with --json the same as JSON:
`{"wave_year": 2020, "spec": "...", "open": 2, "decisions": [{"kind", "column", "values", "proposal", "evidence",
"where", "needs_person"}, ...]}`. Exit code 0 when nothing is left to decide, 3 (EXIT_OPEN) when decisions remain,
2 for an error (a file it cannot read, a spec it will not draft over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from survey_warehouse.drafting.draft import EXIT_OPEN, Draft, draft_wave


def add_draft_command(wave_commands: Any) -> None:
    """`draft` under the `wave` command group."""
    parser = wave_commands.add_parser(
        "draft",
        help="propose a new wave's spec and codebook rows from its file and the earlier waves",
        description="Writes config/waves/YEAR.yml and the wave's codebook rows; what only a person can decide is "
        "left as a value starting with 'TODO:'. Exit code 0: nothing left to decide; 3: decisions remain.",
    )
    parser.add_argument("file", type=Path, help="the delivered file (CSV text, a spreadsheet, an SPSS .sav)")
    parser.add_argument("--year", type=int, required=True, help="the wave year")
    parser.add_argument("--json", action="store_true", help="print the open decisions as JSON")
    parser.add_argument("--dry-run", action="store_true", help="write nothing; only print the decisions")
    parser.add_argument(
        "--force", action="store_true", help="draft over a spec that is not a draft (written by hand or shipped)"
    )
    parser.set_defaults(wave_command_run=command)


def command(paths: Any, args: argparse.Namespace) -> int:
    """The command's exit code (the `wave` group's calling convention)."""
    return run_draft(args, paths.root)


def run_draft(args: argparse.Namespace, root: Path) -> int:
    draft = draft_wave(args.file, args.year, root, write=not args.dry_run, force=args.force)
    sys.stdout.write(draft.as_json() + "\n" if args.json else report(draft))
    return EXIT_OPEN if draft.open else 0


def report(draft: Draft) -> str:
    """The decisions left to a person, numbered, each with its proposal, evidence and where to answer it."""
    open_ = [d for d in draft.decisions if d.needs_person]
    lines = [
        f"Wave {draft.year}: {draft.spec_path} and the wave's codebook rows drafted; "
        f"{draft.settled} proposals sure, {len(open_)} decision(s) left to you.",
    ]
    for number, d in enumerate(open_, start=1):
        about = f" {d.column!r}" if d.column else ""
        values = f" {', '.join(repr(v) for v in d.values)}" if d.values else ""
        proposal = f": proposed {d.proposal!r}" if d.proposal not in (None, "", []) else ""
        lines.append(f"{number:>3}. [{d.kind}]{about}{values}{proposal}")
        lines.extend(f"       - {e}" for e in d.evidence)
        lines.append(f"       answer in {d.where}")
    for d in draft.decisions:
        if not d.needs_person:
            lines.append(f"  note [{d.kind}] {d.column!r} {', '.join(d.values)}: {'; '.join(d.evidence)}")
    if open_:
        lines.append(
            "Replace each 'TODO: ...' with your answer (delete 'TODO: ' to take the proposal), then run "
            "`wave draft` again: it keeps what you decided."
        )
    else:
        lines.append("Nothing left to decide: run `wave check`, then `make run`.")
    return "\n".join(lines) + "\n"
