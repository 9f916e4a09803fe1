"""Every error the library raises on purpose.

    OCCError
    ├── InvalidInputError        bad messages or text (ValueError)
    ├── InvalidParameterError    bad strategy parameter or budget (ValueError)
    ├── UnknownNameError         unknown strategy, preset or model alias (KeyError), with suggestions
    ├── PresetError              a preset file that cannot be read or is malformed
    └── TokenizerError           a tokenizer file missing or failing its hash check

Callers catch ``OCCError`` to handle all of them; the command line turns them into one-line messages.
"""

from __future__ import annotations

from collections.abc import Sequence


class OCCError(Exception):
    """Base class of all occ-research errors."""


class InvalidInputError(OCCError, ValueError):
    """The prompt (messages or text) does not have the shape the OpenAI chat API accepts."""


class InvalidParameterError(OCCError, ValueError):
    """A strategy parameter or a budget is out of range or of the wrong type."""


class UnknownNameError(OCCError, KeyError):
    """A name looked up in a registry does not exist; ``suggestions`` holds the closest names."""

    def __init__(self, kind: str, name: str, suggestions: Sequence[str] = ()) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class PresetError(OCCError):
    """A preset file cannot be read or does not describe a strategy."""


class TokenizerError(OCCError):
    """A tokenizer file is missing or does not match its recorded sha256."""
