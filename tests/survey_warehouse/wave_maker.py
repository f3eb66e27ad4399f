"""Waves the draft was not tuned on, generated with their truth: which field or question each column is, and the
code of every answer. A wave is reordered and renamed from the earlier ones, with options renamed, a question dropped
and a new question; the project (its specs and seeds) is copied, so the draft writes into the copy."""

from __future__ import annotations

import csv
import datetime as dt
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
YEAR = 2021
CITIES = ["091", "049", "837", "092", "564", "853", "179", "398", "297", "609", "286", "167", "405", "109", "905"]
CITIES += ["743", "698", "491", "285", "734"]
ROLES = {"Tietohallintojohtaja": "cio", "Toimialajohtaja": "sector_director", "Kaupunginjohtaja": "city_manager"}


@dataclass
class Variant:
    """How a generated wave differs from the earlier ones."""

    name: str
    seed: int
    format: str = "csv"  # csv (with encoding and delimiter) or xlsx
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    title_rows: list[str] = field(default_factory=list)  # a title block above the header
    headers: dict[str, str] = field(default_factory=dict)  # field -> header
    lead_labels: dict[str, str] = field(default_factory=dict)  # code -> label as delivered
    cooperation: tuple[int, int, bool] = (1, 5, True)  # the scale's ends; whether the header states them
    dropped: tuple[str, ...] = ()
    new_question: tuple[str, dict[str, str]] | None = None  # header, label -> code
    misspelled: dict[str, str] = field(default_factory=dict)  # municipality code -> a spelling no alias knows
    respelled: dict[str, list[str]] = field(default_factory=dict)  # municipality code -> each respondent's spelling
    it_led: int = 7  # cities whose every respondent says IT management leads
    scale_words: tuple[str, str] = ("erittäin huonosti", "erittäin hyvin")  # cooperation's worded ends, when stated
    stages: dict[str, str] | None = None  # it_involvement_stage: label -> code (None: STAGES)
    roles: dict[str, str] | None = None  # job title -> role code, one respondent per title in each city (None: ROLES)
    names: list[str] | None = None  # the respondents' names, repeated in turn (None: a distinct one each)
    comments: list[str] | None = None  # the free-text feedback, chosen at random (None: mostly empty)
    cities: int = 19  # cities that answer


VARIANTS = [
    Variant(
        "renamed-and-reordered",
        seed=1,
        headers={
            "respondent_name": "Vastaajan nimi",
            "respondent_email": "Sähköpostiosoite",
            "city": "Kunta",
            "respondent_role": "Tehtävä",
            "submitted_at": "Lähetetty",
            "response_minutes": "Kesto (min)",
            "lead": "K1. Kuka johtaa digitalisaatiota kaupungissanne?",
            "cooperation": "K2. Tietohallinnon ja toimialojen yhteistyö (1-5)",
            "it_involvement_stage": "K3. Missä vaiheessa tietohallinto otetaan mukaan hankkeisiin?",
            "business_digital_skills": "K4. Toimialojen digiosaaminen (1-5)",
        },
        lead_labels={
            "it_management": "Tietohallinto / ICT-johto",
            "sector_directors": "Toimialajohtajat",
            "city_leadership": "Kaupunginjohto",
            "chief_digital_officer": "Digijohtaja (CDO)",
        },
        new_question=(
            "K5. Onko kaupungillanne digitalisaatio-ohjelma?",
            {"Kyllä": "yes", "Ei": "no", "Valmistelussa": "in_preparation"},
        ),
    ),
    Variant(
        "title-block-semicolons-dropped-question",
        seed=2,
        encoding="cp1252",
        delimiter=";",
        title_rows=["Kaupunkikysely 2021", "Vastaukset 15.4.2021"],
        headers={
            "respondent_email": "E-mail",
            "respondent_name": "Nimi",
            "city": "Kaupunki",
            "respondent_role": "Asema",
            "submitted_at": "Vastausaika",
            "lead": "Q1 Kenelle digitalisaation johtaminen ensisijaisesti kuuluu?",
            "it_involvement_stage": "Q2 Missä vaiheessa tietohallinto tulee mukaan?",
            "cooperation": "Q3 Tietohallinnon ja toimialojen yhteistyön sujuvuus",
        },
        lead_labels={
            "it_management": "ICT-palvelut",
            "sector_directors": "Toimialat / toimialajohtajat",
            "city_leadership": "Kaupunginjohto / konsernihallinto",
            "no_designated_lead": "Vastuuta ei ole määritelty",
        },
        cooperation=(0, 10, False),
        dropped=("business_digital_skills", "response_minutes"),
        misspelled={"837": "Tampre"},
        it_led=5,
    ),
    Variant(
        "workbook-with-instructions-sheet",
        seed=3,
        format="xlsx",
        title_rows=["Digitalisaation johtaminen 2021"],
        headers={
            "lead": "1) Kuka vastaa ensisijaisesti digitalisaation johtamisesta?",
            "respondent_role": "Rooli",
            "respondent_email": "Email",
            "city": "Organisaatio",
            "submitted_at": "Aikaleima",
            "response_minutes": "Vastausaika (min)",
            "cooperation": "2) IT:n ja toimialojen yhteistyö toimii hyvin (1-7)",
        },
        lead_labels={
            "it_management": "Tietohallinto",
            "sector_directors": "Toimialajohtajat",
            "city_leadership": "Kaupunginjohto",
            "chief_digital_officer": "Digijohtaja",
            # a new option that shares words with earlier ones: never coded as either without a person
            "joint_lead": "Tietohallinto ja toimialat yhdessä",
        },
        cooperation=(1, 7, True),
        dropped=("it_involvement_stage", "business_digital_skills", "respondent_name"),
        new_question=("3) Käytetäänkö kaupungissa tekoälyä palveluissa?", {"Kyllä": "yes", "Ei": "no"}),
        it_led=9,
    ),
]

STAGES = {
    "Strategiavaiheessa": "strategy",
    "Suunnitteluvaiheessa": "planning",
    "Ei lainkaan": "not_involved",
}
SKILLS = ["1", "2", "3", "4", "5"]


@dataclass
class Wave:
    root: Path
    file: Path
    truth: dict[str, str | None]  # header -> field (None: not mapped)
    codes: dict[tuple[str, str], str]  # (field, label) -> code
    new_question: str | None  # its header
    it_led: int
    cities: int


def copy_project(target: Path) -> Path:
    for part in ("config/waves", "dbt_project/seeds"):
        shutil.copytree(ROOT / part, target / part)
    return target


def _spelling(root: Path, code: str, rng: random.Random) -> str:
    with open(root / "dbt_project" / "seeds" / "city_aliases.csv", encoding="utf-8") as f:
        names = [r["city_alias"] for r in csv.DictReader(f) if r["municipality_code"] == code]
    return rng.choice(names).title()


def make_wave(variant: Variant, root: Path) -> Wave:
    rng = random.Random(variant.seed)
    fields = [f for f in variant.headers if f not in variant.dropped]
    order = fields[:]
    rng.shuffle(order)
    columns = [*order, *(["new"] if variant.new_question else []), "comments"]
    headers = {**variant.headers, "comments": "Vapaa palaute"}
    if variant.new_question:
        headers["new"] = variant.new_question[0]
    lead_codes = list(variant.lead_labels)
    it_cities = set(CITIES[: variant.it_led])
    rows = []
    low, high, stated = variant.cooperation
    for number, code in enumerate(CITIES[: variant.cities]):  # one city does not answer
        lead = "it_management" if code in it_cities else rng.choice([c for c in lead_codes if c != "it_management"])
        for i, (title, _role) in enumerate((variant.roles or ROLES).items()):
            cells = {
                "respondent_name": (
                    variant.names[(3 * number + i) % len(variant.names)] if variant.names else f"Vastaaja {number}-{i}"
                ),
                "respondent_email": f"vastaaja{i}.{code}@kunta{code}.example.fi",
                "city": variant.misspelled.get(code) if variant.misspelled.get(code) and i == 0 else None,
                "respondent_role": title,
                "submitted_at": _time(
                    variant, dt.datetime(YEAR, 3, 8, 9, tzinfo=dt.UTC) + dt.timedelta(hours=rng.randint(0, 600))
                ),
                "response_minutes": f"{rng.randint(4, 30)},{rng.choice([0, 5])}",
                "lead": variant.lead_labels[lead],
                "cooperation": str(rng.randint(low, high)),
                "it_involvement_stage": rng.choice(list(variant.stages or STAGES)),
                "business_digital_skills": rng.choice(SKILLS),
                "new": rng.choice(list(variant.new_question[1])) if variant.new_question else None,
                "comments": rng.choice(
                    variant.comments or ["", "", f"Palvelut ovat kehittyneet vuonna {YEAR} monella tavalla."]
                ),
            }
            if code in variant.respelled:
                cells["city"] = variant.respelled[code][i % len(variant.respelled[code])]
            cells["city"] = cells["city"] or _spelling(root, code, rng)
            rows.append([cells[c] or "" for c in columns])
    if stated:  # both ends answered, in words
        rows[0][columns.index("cooperation")] = f"{low} = {variant.scale_words[0]}"
        rows[1][columns.index("cooperation")] = f"{high} = {variant.scale_words[1]}"
    else:
        rows[0][columns.index("cooperation")], rows[1][columns.index("cooperation")] = str(low), str(high)
    header = [headers[c] for c in columns]
    file = _write(variant, root, header, rows)
    truth: dict[str, str | None] = {headers[c]: c for c in order}
    truth[headers["comments"]] = None
    codes: dict[tuple[str, str], str] = {("lead", label): code for code, label in variant.lead_labels.items()}
    codes |= {("respondent_role", title): role for title, role in (variant.roles or ROLES).items()}
    codes |= {("it_involvement_stage", label): code for label, code in (variant.stages or STAGES).items()}
    codes |= {("business_digital_skills", s): f"score_{s}" for s in SKILLS}
    for value in range(low, high + 1):
        codes[("cooperation", str(value))] = f"score_{value}"
    codes[("cooperation", f"{low} = {variant.scale_words[0]}")] = f"score_{low}"
    codes[("cooperation", f"{high} = {variant.scale_words[1]}")] = f"score_{high}"
    if variant.new_question:
        truth[variant.new_question[0]] = "new"
        codes |= {("new", label): code for label, code in variant.new_question[1].items()}
    new_header = variant.new_question[0] if variant.new_question else None
    return Wave(root, file, truth, codes, new_header, variant.it_led, variant.cities)


def _time(variant: Variant, value: dt.datetime) -> str:
    return value.strftime("%d.%m.%Y %H:%M") if variant.delimiter == ";" else value.strftime("%Y-%m-%d %H:%M")


def _write(variant: Variant, root: Path, header: list[str], rows: list[list[str]]) -> Path:
    folder = root / "data" / "waves" / str(YEAR)
    folder.mkdir(parents=True, exist_ok=True)
    if variant.format == "xlsx":
        import openpyxl

        workbook = openpyxl.Workbook()
        guide = workbook.active
        guide.title = "Ohje"
        guide.append(["Tämä työkirja sisältää kyselyn vastaukset."])
        sheet = workbook.create_sheet("Data")
        for line in variant.title_rows:
            sheet.append([line])
        sheet.append([])
        sheet.append(header)
        for row in rows:
            sheet.append([int(c) if re.fullmatch(r"\d+", c) else (c or None) for c in row])
        path = folder / f"kysely_{YEAR}.xlsx"
        workbook.save(path)
        return path
    path = folder / f"kysely_{YEAR}.csv"
    with open(path, "w", encoding=variant.encoding, newline="") as f:
        for line in variant.title_rows:
            f.write(line + "\r\n")
        writer = csv.writer(f, delimiter=variant.delimiter, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def spec_and_rows(root: Path) -> tuple[dict, list[dict[str, str]], list[dict[str, str]]]:
    spec = yaml.safe_load((root / "config" / "waves" / f"{YEAR}.yml").read_text(encoding="utf-8"))
    seeds = root / "dbt_project" / "seeds"
    with open(seeds / "codebook_questions.csv", encoding="utf-8") as f:
        questions = [r for r in csv.DictReader(f) if r["wave_year"] == str(YEAR)]
    with open(seeds / "codebook_answers.csv", encoding="utf-8") as f:
        answers = [r for r in csv.DictReader(f) if r["wave_year"] == str(YEAR)]
    return spec, questions, answers


def like_2019(
    root: Path, headers: dict[str, str], name: str = "kysely_2021.csv", dropped: tuple[str, ...] = ()
) -> Path:
    """The bundled 2019 file delivered as the wave of YEAR, with headers replaced (old -> new) and columns dropped."""
    source = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
    with open(source, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, h in enumerate(rows[0]) if h not in dropped]
    rows = [[row[i] for i in keep] for row in rows]
    rows[0] = [headers.get(h, h) for h in rows[0]]
    folder = root / "data" / "waves" / str(YEAR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    return path
