"""One error type that carries where a problem came from.

Every message a user sees names the file, line and column (and the step when there
is one), in the `path:line:col: severity: message` form editors and CI understand.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

Severity = Literal["error", "warning"]


class Location(NamedTuple):
    path: str
    line: int = 0  # 1-based; 0 when unknown
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}"
        return self.path


class Diagnostic(NamedTuple):
    """A finding about a file: an error (the file is unusable) or a lint warning."""

    location: Location
    message: str
    severity: Severity = "error"
    code: str = "invalid"
    level: str = ""  # lint severity: low | medium | high
    step: str | None = None

    def __str__(self) -> str:
        # One line per finding, always: text from the file may hold newlines.
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        if self.severity == "warning":
            return f"{self.location}: warning[{self.level}]: {message} [{self.code}]"
        return f"{self.location}: error: {message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.location.path,
            "line": self.location.line,
            "col": self.location.col,
            "severity": self.severity,
            "code": self.code,
            "level": self.level or None,
            "step": self.step,
            "message": self.message,
        }


class IrbookError(Exception):
    """A user-facing error: the CLI prints `str(error)` on one line and exits 1."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is not None:
            return f"{self.location}: error: {self.message}"
        return f"error: {self.message}"


class LoadFailed(IrbookError):
    """A file could not be loaded; carries every diagnostic found in one pass."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        first = diagnostics[0] if diagnostics else None
        super().__init__(
            first.message if first else "invalid file", first.location if first else None
        )
        self.diagnostics = diagnostics

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)
