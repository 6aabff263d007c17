"""The integer a count written as text probably means ("32K" -> 32768), for the message that refuses it.

A data file's integer field and `--vary`'s integer values take integers only; no string form is accepted (none is
documented). When the text reads as a count, the error names the integer it probably meant.
"""

from __future__ import annotations

import re

# K, M, G as powers of 1024: a sequence length of "32K" is 32,768 tokens (Qwen3's "32K context" is 32,768)
_SUFFIX = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_COUNT = re.compile(r"(\d+(?:[.]\d+)?)\s*([kmg]?)i?", re.IGNORECASE)


def meant_integer(value: object) -> int | None:
    """The integer `value` (a string such as "32K", "32k", "1.5K", "32,768", "32_768" or "4096") probably means;
    None when it reads as no count or as no whole number."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace(",", "").replace("_", "")
    match = _COUNT.fullmatch(text)
    if match is None:
        return None
    number, suffix = match.groups()
    whole = float(number) * _SUFFIX[suffix.lower()]
    return int(whole) if whole.is_integer() else None


def integer_hint(key: str, value: object, sep: str = " = ") -> str:
    """'; did you mean seq_len = 32768 (an integer, no quotes; K = 1,024)?' for a count `key` was given as text,
    else ''. `sep` joins key and value as the user writes them (" = " in a file, "=" after --vary)."""
    meant = meant_integer(value)
    if meant is None:
        return ""
    scale = re.sub(r"[\d.,_\s]", "", str(value))
    # in a file the text was a quoted string; after --vary it was not
    said = (["an integer, no quotes"] if sep == " = " else []) \
        + ([f"{scale[0].upper()} = {_SUFFIX[scale[0].lower()]:,}"] if scale else [])
    return f"; did you mean {key}{sep}{meant}" + (f" ({'; '.join(said)})" if said else "") + "?"
