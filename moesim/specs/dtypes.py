"""The number formats a spec names (a chip's peaks, an operator table, a training run's dtypes) and their bytes per
element. Split out of specs/hardware.py (session 11, tidy: a pure move)."""

DTYPES = ("float32", "tfloat32", "bfloat16", "float16", "float8")
DTYPE_BYTES = {"float32": 4, "tfloat32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
