"""Generate the synthetic sample exports of the 2016, 2018 and 2019 survey waves (seeded, reproducible).

The real per-respondent exports are not public. These files imitate what the survey tools delivered, with the
problems a warehouse has to solve (three file shapes, typed city names, renamed and recoded questions), and are
calibrated so that the city-level roll-up reproduces the published headline. Names and e-mail addresses are fake.

    python scripts/generate_sample_waves.py        # rewrites data/waves/*
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from pathlib import Path

import openpyxl
import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED = 20190430

# City-level story: who primarily leads digitalisation (the key respondent's answer). None = did not respond.
PLANNED_LEAD: dict[str, tuple[str | None, str, str]] = {
    "091": ("it_management", "sector_directors", "chief_digital_officer"),
    "049": ("city_leadership", "city_leadership", "city_leadership"),
    "837": ("sector_directors", "sector_directors", "sector_directors"),
    "092": ("it_management", "it_management", "sector_directors"),
    "564": ("it_management", "sector_directors", "sector_directors"),
    "853": ("it_management", "it_management", "chief_digital_officer"),
    "179": ("it_management", "sector_directors", "sector_directors"),
    "398": ("it_management", "it_management", "sector_directors"),
    "297": ("sector_directors", "sector_directors", "sector_directors"),
    "609": ("it_management", "it_management", "city_leadership"),
    "286": ("it_management", "it_management", "it_management"),
    "167": ("it_management", "it_management", "it_management"),
    "405": ("it_management", "it_management", "it_management"),
    "109": ("it_management", "city_leadership", "sector_directors"),
    "905": ("it_management", "sector_directors", "chief_digital_officer"),
    "743": ("it_management", "no_designated_lead", "sector_directors"),
    "698": ("it_management", "it_management", "it_management"),
    "491": ("it_management", "it_management", "it_management"),
    "285": ("it_management", "sector_directors", "it_management"),
    "734": (None, "it_management", "it_management"),
}
WAVES = (2016, 2018, 2019)

# Cities whose key respondent (CIO / ICT director) did not answer: the roll-up falls back on the others.
# 2018 Kotka: two other managers agree. 2018 Seinäjoki: two other managers disagree (a tie broken by seniority).
NO_KEY_RESPONDENT: dict[tuple[int, str], list[tuple[str, str]]] = {
    (2018, "285"): [("sector_director", "sector_directors"), ("development_manager", "sector_directors")],
    (2018, "743"): [("city_manager", "no_designated_lead"), ("sector_director", "sector_directors")],
}

FIRST_NAMES = [
    "Aino",
    "Eero",
    "Helmi",
    "Juha",
    "Kaisa",
    "Lauri",
    "Mari",
    "Mikko",
    "Niina",
    "Olli",
    "Päivi",
    "Riku",
    "Sanna",
    "Tapio",
    "Tiina",
    "Ville",
    "Sari",
    "Jari",
    "Minna",
    "Antti",
    "Hanna",
    "Kari",
    "Leena",
    "Timo",
]
LAST_NAMES = [
    "Virtanen",
    "Korhonen",
    "Mäkinen",
    "Nieminen",
    "Mäkelä",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
    "Lehtonen",
    "Lehtinen",
    "Saarinen",
    "Salminen",
    "Heinonen",
    "Niemi",
    "Heikkilä",
    "Kinnunen",
]
COMMENTS = [
    "",
    "",
    "",
    "Asukas ensin: koko palveluprosessi pitää digitalisoida.",
    "Toimialat suunnittelevat usein yksin.",
    "Tietohallinto kutsutaan mukaan vasta hankintapäätöksessä.",
    "Ulkopuolinen fasilitaattori auttaisi.",
    "Digiosaaminen on vielä heikkoa monella toimialalla.",
    "Kaikki ovat vastuussa digitalisaatiosta.",
    # free text carries personal data too: it must never leave the raw layer
    "Lisätietoja antaa Matti Meikäläinen, matti.meikalainen@example.fi, puh. 040 123 4567.",
]


def _labels(wave: int, question: str) -> dict[str, str]:
    """Canonical answer code -> the label the survey tool used in that wave (first label per code)."""
    out: dict[str, str] = {}
    with open(ROOT / "dbt_project/seeds/codebook_answers.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if int(row["wave_year"]) == wave and row["question_id"] == question:
                out.setdefault(row["answer_code"], row["source_label"])
    return out


def _city_spellings(code: str) -> list[str]:
    with open(ROOT / "dbt_project/seeds/city_aliases.csv", encoding="utf-8") as f:
        return [r["city_alias"] for r in csv.DictReader(f) if r["municipality_code"] == code]


def _official_names() -> dict[str, str]:
    with open(ROOT / "dbt_project/seeds/cities.csv", encoding="utf-8") as f:
        return {r["municipality_code"]: r["name_fi"] for r in csv.DictReader(f)}


def _type_city(rng: random.Random, code: str, official: str) -> str:
    """A city name as a respondent types it: mostly the official name, sometimes another spelling or casing."""
    if rng.random() < 0.5:
        return official
    alias = rng.choice(_city_spellings(code))
    styles = [alias, alias.upper(), alias.title(), f" {alias.capitalize()} "]
    return rng.choice(styles)


def _fold(text: str) -> str:
    return text.lower().translate(str.maketrans("äöå", "aoa"))


def _respondents(rng: random.Random, wave: int, code: str, lead: str) -> list[dict[str, str]]:
    """Who answered for one city: the key respondent (CIO) plus one to three other managers."""
    others_roles = ["city_manager", "sector_director", "development_manager", "other_manager"]
    if (wave, code) in NO_KEY_RESPONDENT:
        return [{"role": role, "lead": answer} for role, answer in NO_KEY_RESPONDENT[(wave, code)]]
    people = [{"role": "cio", "lead": lead}]
    for role in rng.sample(others_roles, rng.randint(1, 3)):
        # Other managers often see their own line as the leader: the reason the roll-up rule matters.
        own_view = {"sector_director": "sector_directors", "city_manager": "city_leadership"}.get(role, lead)
        people.append({"role": role, "lead": lead if rng.random() < 0.6 else own_view})
    return people


def _answers(rng: random.Random, wave: int, lead: str) -> dict[str, int | str]:
    """Other themes of the article: cooperation, the stage IT joins, business-side digital skills."""
    it_led = lead == "it_management"
    coop = min(5, max(1, round(rng.gauss(3.4 if not it_led else 2.9, 0.9) + (0.3 if wave == 2019 else 0))))
    stages = ["strategy", "planning", "procurement", "implementation", "not_involved"]
    weights = [4, 4, 2, 1, 0.3] if it_led else [1, 2, 4, 2, 0.5]
    if wave == 2019:
        stages, weights = ["ideation", *stages], [1, *weights]
    skills = min(5, max(1, round(rng.gauss(2.6 + 0.3 * (wave - 2016) / 3, 0.8))))
    return {"cooperation": coop, "stage": rng.choices(stages, weights)[0], "skills": skills}


def generate_wave(wave: int, rng: random.Random) -> list[dict[str, object]]:
    """One record per respondent, in field ids; formatting per wave is done by the writers."""
    names = _official_names()
    labels = {
        q: _labels(wave, q)
        for q in ("lead", "respondent_role", "it_involvement_stage", "cooperation", "business_digital_skills")
    }
    start = dt.datetime(wave, 3, 12, 8, 0)
    records: list[dict[str, object]] = []
    used_emails: set[str] = set()
    for code, leads in PLANNED_LEAD.items():
        lead = leads[WAVES.index(wave)]
        if lead is None:
            continue
        for person in _respondents(rng, wave, code, lead):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            email = f"{_fold(first)}.{_fold(last)}@{_fold(names[code])}.example.fi"
            while email in used_emails:
                email = email.replace("@", f"{rng.randint(2, 9)}@", 1)
            used_emails.add(email)
            ans = _answers(rng, wave, person["lead"])
            cooperation = (
                ans["cooperation"] if wave < 2019 else min(10, max(0, 2 * ans["cooperation"] - rng.randint(0, 1)))
            )
            skills = ans["skills"] if wave < 2019 else min(4, max(1, round(ans["skills"] * 0.8)))
            records.append(
                {
                    "respondent_name": f"{first} {last}",
                    "respondent_email": email,
                    "city": _type_city(rng, code, names[code]),
                    "respondent_role": labels["respondent_role"][person["role"]],
                    "submitted_at": start + dt.timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 600)),
                    "response_minutes": round(rng.uniform(4, 25) * 2) / 2,
                    "lead": labels["lead"][person["lead"]],
                    "cooperation": labels["cooperation"][f"score_{cooperation}"],
                    "it_involvement_stage": labels["it_involvement_stage"][ans["stage"]],
                    "business_digital_skills": labels["business_digital_skills"][f"score_{skills}"],
                    "comment": rng.choice(COMMENTS),
                }
            )
    rng.shuffle(records)
    return records


def _headers(spec: dict) -> list[str]:
    by_field = {field: header for header, field in spec["columns"].items()}
    comment_header = {2016: "Vapaa sana", 2018: "Kommentit", 2019: "Q5 Vapaa palaute"}[spec["wave_year"]]
    return [*by_field.values(), comment_header], [*by_field.keys(), "comment"]


def write_csv(spec: dict, records: list[dict[str, object]], path: Path) -> None:
    headers, fields = _headers(spec)
    wave = spec["wave_year"]
    with open(path, "w", encoding=spec["encoding"], newline="") as f:
        writer = csv.writer(f, delimiter=spec["delimiter"], lineterminator="\r\n" if wave == 2016 else "\n")
        writer.writerow(headers)
        for rec in records:
            row = []
            for field in fields:
                value = rec[field]
                if field == "submitted_at":
                    value = (
                        f"{value.day}.{value.month}.{value.year} {value:%H:%M}"
                        if wave == 2016
                        else f"{value:%Y-%m-%dT%H:%M:%S}"
                    )
                elif field == "response_minutes":
                    value = f"{value:.1f}".replace(".", ",") if wave == 2016 else f"{value:.1f}"
                row.append(value)
            writer.writerow(row)


def write_xlsx(spec: dict, records: list[dict[str, object]], path: Path) -> None:
    headers, fields = _headers(spec)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = spec["sheet"]
    ws["A1"] = f"Kaupunkien digitalisaatiokysely {spec['wave_year']} \u2013 vastaukset"  # an en dash, as Excel writes
    ws["A2"] = "Raportti luotu 16.4.2018 (20 suurinta kaupunkia)"
    header_row = spec["header_row"]
    for col, header in enumerate(headers, start=1):
        ws.cell(row=header_row, column=col, value=header)
    for i, rec in enumerate(records, start=header_row + 1):
        for col, field in enumerate(fields, start=1):
            value = rec[field]
            if field == "business_digital_skills":
                value = int(value)  # the tool exported the 1-5 scale as numbers
            ws.cell(row=i, column=col, value=value)
    wb.properties.created = wb.properties.modified = dt.datetime(2018, 4, 16, 9, 0)
    wb.save(path)


def main(argv: list[str] | None = None) -> None:
    # an argument parser only so that --help (or a mistyped option) explains instead of rewriting the files
    argparse.ArgumentParser(
        description="Rewrite data/waves/* with the seeded synthetic sample exports of 2016, 2018 and 2019."
    ).parse_args(argv)
    rng = random.Random(SEED)
    for wave in WAVES:
        spec = yaml.safe_load((ROOT / f"config/waves/{wave}.yml").read_text(encoding="utf-8"))
        path = ROOT / spec["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        records = generate_wave(wave, rng)
        (write_xlsx if spec["format"] == "xlsx" else write_csv)(spec, records, path)
        print(f"{wave}: {len(records)} respondents -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
