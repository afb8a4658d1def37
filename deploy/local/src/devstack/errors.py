"""Errors that name the component that failed."""

from __future__ import annotations


class StackError(Exception):
    """The stack could not be brought to the requested state."""


class ComponentError(StackError):
    def __init__(self, component: str, message: str, log_tail: str | None = None) -> None:
        self.component = component
        self.log_tail = log_tail
        text = f"{component}: {message}"
        if log_tail:
            indented = "\n".join(f"    {line}" for line in log_tail.splitlines())
            text += f"\n  last lines of its log:\n{indented}"
        super().__init__(text)
