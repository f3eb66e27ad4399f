"""Every relative link and anchor in README.md, docs/*.md and bi/README.md resolves: the file exists, and an anchor
names a heading of the file it points into (GitHub's slugs: lower case, punctuation other than '-' and '_' removed,
spaces to '-', a repeated heading numbered -1, -2, ...). Links inside code blocks and code spans are not links."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# the end of an inline link or image, `](target)` or `](target "title")`: its text may span lines, its target cannot
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bi" / "README.md"]


def _prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link in the file's prose."""
    return [
        (number, match.group(1))
        for number, line in _prose(path.read_text(encoding="utf-8"))
        for match in LINK.finditer(CODE_SPAN.sub("", line))
    ]


def broken_links(path: Path) -> list[str]:
    """Each relative link of `path` that does not resolve, with its line and why."""
    broken = []
    for number, target in links(path):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:, ...: not checked here
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif anchor:
            if destination.suffix != ".md" or destination.is_dir():
                broken.append(f"{where}: an anchor into a file that is not markdown")
            elif anchor not in anchors(destination):
                broken.append(f"{where}: no heading with the anchor #{anchor} in {destination.name}")
    return broken


def test_the_documents_are_found() -> None:
    assert (ROOT / "README.md").exists()
    assert len(documents()) > 2, "docs/*.md is empty"


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_github_slugs() -> None:
    assert slug("What `make run` does and prints") == "what-make-run-does-and-prints"
    assert slug("Deliveries: the inbox starts a wave's run") == "deliveries-the-inbox-starts-a-waves-run"
    assert slug("Scale-out: PostgreSQL and Airflow's Celery executor") == (
        "scale-out-postgresql-and-airflows-celery-executor"
    )
    assert slug("Exports: Parquet and CSV for people without a SQL client") == (
        "exports-parquet-and-csv-for-people-without-a-sql-client"
    )
    assert slug("snake_case and the_rest") == "snake_case-and-the_rest"


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section, here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Twice\n\n## Twice\n\n"
        "[fine](other.md#a-section-here) [fine](#twice-1) [fine](#page) [web](https://example.org/#x)\n"
        "`[in a code span](missing.md)`\n\n```\n[in a code block](missing.md)\n```\n\n"
        "[no file](missing.md) [no anchor](other.md#nowhere) [no local anchor](#twice-2) [text that goes on\n"
        "the next line](other.md#a-section)\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "missing.md: no such file",
        "other.md#nowhere: no heading with the anchor #nowhere in other.md",
        "#twice-2: no heading with the anchor #twice-2 in page.md",
        "other.md#a-section: no heading with the anchor #a-section in other.md",
    ]
