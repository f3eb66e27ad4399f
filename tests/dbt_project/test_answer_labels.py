"""fct_survey_answers: the label of an answer code that the codebook lists under several spellings is the same on
every engine, whatever the database's collation (the first spelling in byte order)."""

from __future__ import annotations

import pytest
from test_rollup_rule import DATABASES, open_warehouse, render_model

MODEL = "models/marts/fct_survey_answers.sql"
TABLES = {
    "stg_survey__answers": "is_current_load boolean, load_id varchar, source_row_number integer, wave_year integer, "
    "respondent_key varchar, question_id varchar, answer_code varchar, source_label varchar, answer_value double "
    "precision, answer_score double precision",
    "stg_survey__respondents": "is_current_load boolean, load_id varchar, source_row_number integer, "
    "municipality_code varchar, respondent_role_code varchar",
    "respondent_roles": "role_code varchar, is_key_respondent boolean",
    "codebook_questions": "wave_year integer, question_id varchar, question_text_fi varchar, question_text_en varchar",
    "codebook_answers": "wave_year integer, question_id varchar, source_label varchar, answer_code varchar, "
    "answer_label_en varchar, sort_order integer",
}
# spellings that sort differently by bytes and under an en-US collation (upper case first in bytes)
SPELLINGS = ["atk-yksikkö", "Tietohallinto", "tieto_hallinto", "Tieto hallinto", "ICT"]


@pytest.mark.parametrize("database", list(DATABASES))
def test_an_answer_code_with_several_spellings_gets_one_label_on_every_engine(database: str) -> None:
    with open_warehouse(database, "labels") as warehouse:
        warehouse.create(TABLES)
        warehouse.replace(
            "stg_survey__answers",
            [(True, "L", 2, 2019, "r1", "lead", "it_management", "atk-yksikkö", None, None)],
        )
        warehouse.replace("stg_survey__respondents", [(True, "L", 2, "091", "cio")])
        warehouse.replace("respondent_roles", [("cio", True)])
        warehouse.replace("codebook_questions", [(2019, "lead", "Kuka johtaa?", "Who leads?")])
        warehouse.replace(
            "codebook_answers",
            [(2019, "lead", label, "it_management", f"IT {label}", 1) for label in SPELLINGS],
        )
        rows = warehouse.query(render_model(MODEL, warehouse.engine))
    assert [(r["answer_label_fi"], r["answer_label_en"]) for r in rows] == [
        (min(SPELLINGS, key=lambda s: s.encode()), min((f"IT {s}" for s in SPELLINGS), key=lambda s: s.encode()))
    ]
