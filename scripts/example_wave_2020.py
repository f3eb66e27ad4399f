"""An example of adding a year's wave by data and configuration only: writes a 2020 wave into a project folder.

    .venv/bin/python scripts/example_wave_2020.py <project root>     # e.g. a copy of this repository

The 2020 wave comes in a shape the bundled waves do not have (UTF-16 tab-separated text, Excel's "Unicode text"
export), asks a question no earlier wave asked (has_digital_strategy), renames an option ("ICT-yksikkö" for IT
management) and recodes a scale (cooperation on 1-7). The script writes exactly what a survey owner adds: the file
under data/waves/2020/, config/waves/2020.yml, and the 2020 rows of the codebook seeds. Then `make run` loads it.
The data are synthetic (seeded): 19 of the 20 cities answer, 6 of them IT-led.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import yaml

NEW_QUESTION = "has_digital_strategy"
HEADER = [
    "Vastaajan nimi",
    "Sähköpostiosoite",
    "Kaupunki",
    "Tehtävä",
    "Lähetetty",
    "Kesto",
    "1. Kuka johtaa digitalisaatiota kaupungissanne?",
    "2. Yhteistyö tietohallinnon ja toimialojen välillä (1-7)",
    "3. Onko kaupungillanne hyväksytty digitalisaatiostrategia?",
    "Kommentit",
]
LEAD_2020 = {
    "it_management": "ICT-yksikkö",
    "sector_directors": "Toimialajohtajat",
    "city_leadership": "Kaupunginjohto",
    "chief_digital_officer": "Digijohtaja (CDO)",
}
# city -> 2020 lead: 6 of the 20 IT-led, one city silent
PLAN_2020 = {
    "091": "chief_digital_officer",
    "049": "city_leadership",
    "837": "sector_directors",
    "092": "sector_directors",
    "564": "sector_directors",
    "853": "chief_digital_officer",
    "179": "sector_directors",
    "398": "it_management",
    "297": "sector_directors",
    "609": "city_leadership",
    "286": "it_management",
    "167": "it_management",
    "405": "it_management",
    "109": "sector_directors",
    "905": "chief_digital_officer",
    "743": "sector_directors",
    "698": "it_management",
    "491": "it_management",
    "285": "sector_directors",
    "734": None,
}
STRATEGY = {"Kyllä": "yes", "Ei": "no", "Valmisteilla": "in_preparation"}

CODEBOOK_QUESTIONS_2020 = [
    ["2020", "respondent_role", "Tehtävä", "Role", "category", "", "", "true"],
    [
        "2020",
        "lead",
        "1. Kuka johtaa digitalisaatiota kaupungissanne?",
        "1. Who leads digitalisation in your city?",
        "category",
        "",
        "",
        "true",
    ],
    [
        "2020",
        "cooperation",
        "2. Yhteistyö tietohallinnon ja toimialojen välillä (1-7)",
        "2. Cooperation between IT management and the business lines (1-7)",
        "scale",
        "1",
        "7",
        "false",
    ],
    [
        "2020",
        NEW_QUESTION,
        "3. Onko kaupungillanne hyväksytty digitalisaatiostrategia?",
        "3. Has your city adopted a digitalisation strategy?",
        "category",
        "",
        "",
        "false",
    ],
]
CODEBOOK_ANSWERS_2020 = [
    *[
        ["2020", "respondent_role", label, code, "", en, str(i)]
        for i, (label, code, en) in enumerate(
            [
                ("Tietohallintojohtaja", "cio", "CIO or ICT director"),
                ("Kaupunginjohtaja", "city_manager", "City manager"),
                ("Toimialajohtaja", "sector_director", "Sector director"),
            ],
            start=1,
        )
    ],
    *[
        ["2020", "lead", label, code, "", code.replace("_", " ").capitalize(), str(i)]
        for i, (code, label) in enumerate(LEAD_2020.items(), start=1)
    ],
    # the 1-7 scale: numbers need no rows; its ends are labelled
    ["2020", "cooperation", "1 = erittäin huonosti", "score_1", "1", "1 = very poorly", "1"],
    ["2020", "cooperation", "7 = erittäin hyvin", "score_7", "7", "7 = very well", "7"],
    *[
        [
            "2020",
            NEW_QUESTION,
            label,
            code,
            "",
            {"yes": "Yes", "no": "No", "in_preparation": "In preparation"}[code],
            str(i),
        ]
        for i, (label, code) in enumerate(STRATEGY.items(), start=1)
    ],
]


def write_wave_2020(root: Path) -> None:
    """The 2020 export, its wave spec and its codebook rows, written into a copy of the project."""
    rng = random.Random(2020)
    rows = []
    for code, lead in PLAN_2020.items():
        if lead is None:
            continue
        city = {"091": "Helsingin kaupunki", "179": "Jyva\u0308skyla\u0308"}.get(code)  # typed on a Mac
        for i, (title, answer) in enumerate(
            [
                ("Tietohallintojohtaja", lead),
                ("Toimialajohtaja", lead),
                ("Kaupunginjohtaja", rng.choice(list(LEAD_2020))),
            ]
        ):
            rows.append(
                [
                    f"Vastaaja {code}-{i}",
                    f"vastaaja{i}.{code}@kunta{code}.example.fi",
                    city or _spelling(root, code),
                    title,
                    f"2020-03-{rng.randint(10, 28)} {rng.randint(8, 17)}:05",
                    f"{rng.randint(5, 30)},5",
                    LEAD_2020[answer],
                    rng.choice(["1 = erittäin huonosti", "2", "3", "4", "5", "6", "7 = erittäin hyvin"]),
                    rng.choice(list(STRATEGY)),
                    "",
                ]
            )
    folder = root / "data" / "waves" / "2020"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "kaupunkikysely_2020.txt", "w", encoding="utf-16", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    spec = yaml.safe_load((root / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    spec.update(
        {
            "wave_year": 2020,
            "file": "data/waves/2020/kaupunkikysely_2020.txt",
            "format": "csv",
            "encoding": "utf-16",
            "delimiter": "\t",
            "header_row": 1,
            "questionnaire_version": "2020-fi-4",
            "field_period": {"start": "2020-03-09", "end": "2020-04-03"},
            "columns": {
                "Vastaajan nimi": "respondent_name",
                "Sähköpostiosoite": "respondent_email",
                "Kaupunki": "city",
                "Tehtävä": "respondent_role",
                "Lähetetty": "submitted_at",
                "Kesto": "response_minutes",
                HEADER[6]: "lead",
                HEADER[7]: "cooperation",
                HEADER[8]: NEW_QUESTION,
            },
        }
    )
    (root / "config" / "waves" / "2020.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    seeds = root / "dbt_project" / "seeds"
    for name, new_rows in (
        ("codebook_questions.csv", CODEBOOK_QUESTIONS_2020),
        ("codebook_answers.csv", CODEBOOK_ANSWERS_2020),
    ):
        with open(seeds / name, "a", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(new_rows)


def _spelling(root: Path, code: str) -> str:
    """A way of writing the city's name that the codebook knows, capitalised as people type it."""
    with open(root / "dbt_project" / "seeds" / "city_aliases.csv", encoding="utf-8") as f:
        return next(r["city_alias"].title() for r in csv.DictReader(f) if r["municipality_code"] == code)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    write_wave_2020(Path(sys.argv[1]))
    print(f"wrote the 2020 wave into {sys.argv[1]}: data/waves/2020/, config/waves/2020.yml, codebook rows")
