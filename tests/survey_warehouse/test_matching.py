"""The one matching rule: a shared corpus of awkward strings, and what each warehouse holds for them.

The rule is evaluated once, by `survey_warehouse.intake.matching.match_keys` (Arrow), when a file is loaded; staging on
DuckDB and on PostgreSQL reads the keys and what they resolved to from raw instead of matching again. These tests
prove that on the corpus: the expected keys, the scalar and vector forms, and the keys both warehouses hold after
loading the corpus are identical."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conftest import matching_corpus as corpus

from survey_warehouse.intake.matching import match_key, match_keys, shown


@pytest.mark.parametrize(("case", "value", "expected"), corpus(), ids=[c[0] for c in corpus()])
def test_corpus_keys(case: str, value: str, expected: str | None) -> None:
    assert match_key(value) == expected, f"{case}: {shown(value)}"


def test_vector_and_scalar_forms_agree() -> None:
    values = [v for _c, v, _e in corpus()]
    assert match_keys(pa.array(values)).to_pylist() == [match_key(v) for v in values]
    chunked = pa.chunked_array([pa.array(values[:5]), pa.array(values[5:])])
    assert match_keys(chunked).to_pylist() == [match_key(v) for v in values]


def test_keys_are_stable() -> None:
    """A key is its own key: matching twice changes nothing (seed spellings can be written as keys)."""
    for _case, value, _expected in corpus():
        key = match_key(value)
        assert match_key(key) == key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Jyväskylä", "'Jyväskylä'"),
        ("Jyva\u0308skyla\u0308", "'Jyva\\u0308skyla\\u0308'"),
        ("Turku\t", "'Turku\\t'"),
        ("a\u00a0b", "'a\\u00a0b'"),
        ("\u200bEspoo", "'\\u200bEspoo'"),
        (" x ", "'\\u0020x\\u0020'"),
        ("Helsinki city", "'Helsinki city'"),
        (None, "(empty)"),
    ],
)
def test_messages_show_values_a_reader_could_not_tell_apart_escaped(value, expected) -> None:
    assert shown(value) == expected
