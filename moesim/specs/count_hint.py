"""The integer a count written as text probably means ("32K" -> 32768), for the message that refuses it.

A data file's integer field and `--vary`'s integer values take integers only; no string form is accepted (none is
documented). When the text reads as a count, the error names the integer it probably meant.
"""

from __future__ import annotations

import re
from fractions import Fraction

# K, M, G as powers of 1024: a sequence length of "32K" is 32,768 tokens (Qwen3's "32K context" is 32,768)
_SUFFIX = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
# the number, then a suffix (K, M, G, each with an optional i: "32Ki"); an "i" alone is no suffix; 30 digits at most
# (no count is longer; a longer one is no hint, and Python refuses to print a 4,300-digit integer)
_COUNT = re.compile(r"(\d{1,30}(?:[.]\d{1,30})?)\s*(?:([kmg])i?)?", re.IGNORECASE)


def _count(value: object) -> re.Match | None:
    """`value` read as a count (its number and suffix), or None: not a string, or no count."""
    return _COUNT.fullmatch(value.strip().replace(",", "").replace("_", "")) if isinstance(value, str) else None


def meant_integer(value: object) -> int | None:
    """The integer `value` (a string such as "32K", "32k", "1.5K", "32,768", "32_768" or "4096") probably means;
    None when it reads as no count or as no whole number."""
    match = _count(value)
    if match is None:
        return None
    number, suffix = match.groups()
    whole = Fraction(number) * _SUFFIX[(suffix or "").lower()]  # exact: a float would round a long count
    return int(whole) if whole.denominator == 1 else None


def integer_hint(key: str, value: object, sep: str = " = ") -> str:
    """'; did you mean seq_len = 32768 (an integer, no quotes; K = 1,024)?' for a count `key` was given as text,
    else ''. `sep` joins key and value as the user writes them (" = " in a file, "=" after --vary)."""
    meant = meant_integer(value)
    if meant is None:
        return ""
    scale = _count(value).group(2) or ""
    # in a file the text was a quoted string; after --vary it was not
    said = (["an integer, no quotes"] if sep == " = " else []) \
        + ([f"{scale.upper()} = {_SUFFIX[scale.lower()]:,}"] if scale else [])
    return f"; did you mean {key}{sep}{meant}" + (f" ({'; '.join(said)})" if said else "") + "?"
