"""The one rule for matching typed values (city names, answer labels, e-mail addresses, headers) to the codebook.

A value's match key is: Unicode NFKC (composes decomposed letters, turns no-break and other compatibility spaces
into plain ones), format characters removed (zero-width spaces and joiners, soft hyphens, stray byte-order
marks), every run of whitespace (tabs, line breaks, no-break spaces...) made one space and trimmed, lower-cased,
and ß written ss. An empty result is no value (None).

The rule is evaluated in one place only: `match_keys`, vectorised with Arrow. The loader applies it to every
distinct value of a mapped column and stores the key and what it resolved to; staging uses those, so SQL never
re-implements it, on either warehouse. `match_key` is the same function for one value.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# Bump when the rule changes: loads made under another version are read again (their keys would differ).
RULE_VERSION = "1"


def match_keys(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The match key of every value (strings; nulls stay null, values that normalise to nothing become null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    keys = pc.ascii_lower(pc.utf8_normalize(values.cast(pa.string()), "NFKC"))
    # Only values with a space or a non-ASCII character need more than lower-casing
    unusual = pc.fill_null(pc.match_substring_regex(keys, pattern=r"[^\x21-\x7e]"), False)
    if pc.any(unusual).as_py():
        subset = pc.replace_substring_regex(pc.filter(keys, unusual), pattern=r"\p{Cf}+", replacement="")
        subset = pc.replace_substring_regex(subset, pattern=r"[\s\p{Z}\x{85}]+", replacement=" ")
        subset = pc.utf8_lower(pc.utf8_trim(subset, characters=" "))
        subset = pc.replace_substring(subset, pattern="ß", replacement="ss")
        keys = pc.replace_with_mask(keys, unusual, subset)
    return pc.if_else(pc.equal(keys, ""), pa.scalar(None, pa.string()), keys)


def match_key(value: Any) -> str | None:
    """The match key of one value: the same computation as `match_keys`."""
    import pyarrow as pa

    if value is None:
        return None
    return match_keys(pa.array([str(value)], pa.string()))[0].as_py()


def _is_plain(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNPS" and unicodedata.combining(ch) == 0 and ch.isprintable()


BASIC_PLANE = 0xFFFF  # characters above it are escaped with \U and eight digits
_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "'": "\\'", "\\": "\\\\"}


def shown(value: Any) -> str:
    """A value for a message, quoted; characters a reader could not see or tell apart are escaped.

    'Jyväskylä' typed with precomposed letters shows as is; the same name typed with combining marks, a tab, a
    no-break space or a zero-width space shows them as escapes ('Jyva\\u0308skyla\\u0308', 'Turku\\t')."""
    if value is None:
        return "(empty)"
    text = str(value)
    out = []
    for i, ch in enumerate(text):
        lone_space = ch == " " and 0 < i < len(text) - 1 and text[i - 1] != " " and text[i + 1] != " "
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _is_plain(ch) or lone_space:
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= BASIC_PLANE else f"\\U{ord(ch):08x}")
    return "'" + "".join(out) + "'"


# something@domain, wherever it is typed: with the at sign in any width (NFKC), or written out ("at", "(at)",
# "[at]") between two words with a dotted domain
EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+|\S+\s*[(\[]?\s*\bat\b\s*[)\]]?\s*\S+\.\S+")
# six digits or more in one number, however spaced or punctuated: a phone number, a personal identity code
LONG_NUMBER = re.compile(r"\d(?:[\s()./-]*\d){5,}")
# how close an unknown value must be to a known one (difflib's ratio of their match keys) to be quoted
RESEMBLES = 0.75


def looks_like_email(value: Any) -> bool:
    """Whether a value holds something that looks like an e-mail address."""
    if value is None:
        return False
    key = unicodedata.normalize("NFKC", str(value)).lower()
    return EMAIL_LIKE.search(key) is not None


def shown_value(value: Any, known: Iterable[str] = ()) -> str:
    """A delivered value of a city or answer column for a message. It is quoted (as `shown`) only when it resembles
    an entry of the codebook it was meant as (`known`: the match keys of the column's city names or labels), so the
    owner sees the misspelling to add; a value that resembles none (a name typed into the wrong column, free text),
    holds what looks like an e-mail address, or a long number (a phone number), is not quoted: the message names
    the row and the column, and the file shows it."""
    if value is None:
        return shown(value)
    text = str(value)
    if looks_like_email(text) or LONG_NUMBER.search(unicodedata.normalize("NFKC", text)):
        return "(a value with contact details or a long number: not quoted, see the file)"
    key = match_key(text) or ""
    if re.fullmatch(r"[+-]?[\d.,]+(e[+-]?\d+)?", key):  # a short number: an answer on a scale
        return shown(value)
    if any(difflib.SequenceMatcher(None, key, k).ratio() >= RESEMBLES for k in known if k):
        return shown(value)
    return "(a value that resembles none the codebook knows here: not quoted, see the file)"
