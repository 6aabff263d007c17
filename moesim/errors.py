"""Errors moesim raises for bad input.

A `SpecError` names the file, the field, the offending value and what would be accepted, so
the CLI can print one clear line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

from typing import Iterable


class SpecError(ValueError):
    """Invalid input: a data file, a field in it, a layout or a command-line value."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: object = None,
        allowed: Iterable[object] | str | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.message = message  # without the file, field and allowed values (with_field)
        self.value = value
        self.allowed = allowed if isinstance(allowed, (str, type(None))) else tuple(allowed)
        super().__init__(self._compose(message))

    def _compose(self, message: str) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.field:
            where.append(f"field '{self.field}'")
        text = f"{': '.join(where)}: {message}" if where else message
        if self.allowed is not None:
            allowed = self.allowed if isinstance(self.allowed, str) else ", ".join(map(str, self.allowed))
            text += f" (allowed: {allowed})"
        return text

    def in_file(self, file: str) -> "SpecError":
        """The same error, attributed to `file` when it names none yet (a command-line option, a field
        starting with "--", is never attributed to a file)."""
        if self.file or (self.field or "").startswith("--"):
            return self
        raw = self.args[0]
        prefix = f"field '{self.field}': " if self.field else ""
        message = raw[len(prefix):] if raw.startswith(prefix) else raw
        if self.allowed is not None:
            message = message.rsplit(" (allowed: ", 1)[0]
        return SpecError(message, file=file, field=self.field, value=self.value, allowed=self.allowed)

    def with_field(self, field: str) -> "SpecError":
        """The same error naming `field` in place of its own: the command-line flag of a library keyword
        (`moesim collective --nccl-algo` for TopologyModel's nccl_algo)."""
        return SpecError(self.message, file=self.file, field=field, value=self.value, allowed=self.allowed)
