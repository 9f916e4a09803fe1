"""Every error the package raises on purpose, in one tree.

    OCCError
    ├── InvalidInputError          bad messages or text (ValueError)
    │   └── ContextLengthError     a prompt and answer longer than a local model's context
    ├── InvalidParameterError      bad strategy parameter or budget (ValueError)
    ├── UnknownNameError           unknown strategy, preset, dataset or metric (KeyError), with suggestions
    ├── ConfigurationError         a configuration file that cannot be read or does not make sense
    │   ├── PresetError            a preset (strategies/*.toml)
    │   ├── SuiteError             an evaluation suite (evals/*.toml)
    │   └── SettingsError          the server's settings, keys file or environment
    ├── DatasetError               a data folder or data file that is missing or cannot be loaded
    ├── ModelUnavailableError      a model, tokenizer or optional package is missing or fails its hash
    │   ├── TokenizerError         a tokenizer rank file
    │   ├── LocalModelError        the local GGUF model or llama-cpp-python ([local] extra)
    │   ├── EmbeddingModelError    the MiniLM embedding model or onnxruntime ([local] extra)
    │   └── PeerUnavailableError   the LLMLingua peer ([peers] extra)
    └── LLMError                   an LLM call failed after its retries
        ├── LLMTimeoutError        the back end did not answer in time
        ├── LLMUpstreamError       it answered with an error status, or could not be reached
        └── LLMResponseError       it answered with something that is not a chat completion

Callers catch ``OCCError`` to handle all of them; the command line turns them into one-line messages
(exit status 2). A missing optional package is a ``ModelUnavailableError`` whose message names the extra to
install.
"""

from __future__ import annotations

from collections.abc import Sequence


class OCCError(Exception):
    """Base class of all occ-research errors."""


class InvalidInputError(OCCError, ValueError):
    """The prompt (messages or text) does not have the shape the OpenAI chat API accepts."""


class ContextLengthError(InvalidInputError):
    """A prompt (with the answer to score after it) needs more tokens than a local model's context holds.

    Raised instead of truncating: a likelihood after a shortened prompt is a number about another prompt.
    """


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


class ConfigurationError(OCCError):
    """A configuration file cannot be read or does not describe what it should."""


class PresetError(ConfigurationError):
    """A preset file cannot be read or does not describe a strategy."""


class SuiteError(ConfigurationError):
    """An evaluation suite cannot be found, read, or does not describe an evaluation."""


class SettingsError(ConfigurationError):
    """The server's settings file, keys file or environment cannot be used; the message names where."""


class DatasetError(OCCError):
    """A data folder or data file is missing or cannot be loaded."""


class ModelUnavailableError(OCCError):
    """A model, tokenizer or optional package is not installed or fails its hash check."""


class TokenizerError(ModelUnavailableError):
    """A tokenizer file is missing or does not match its recorded sha256."""


class LocalModelError(ModelUnavailableError):
    """The local model is not installed, its file fails its hash, or llama-cpp-python is missing."""


class EmbeddingModelError(ModelUnavailableError):
    """The embedding model or tokenizer is missing, fails its hash, or its runtime is not installed."""


class PeerUnavailableError(ModelUnavailableError):
    """The optional peer package (or what it needs) is not installed."""


class LLMError(OCCError):
    """An LLM call failed after its retries (base class of the errors below)."""


class LLMTimeoutError(LLMError):
    """The back end did not answer in time."""


class LLMUpstreamError(LLMError):
    """The back end answered with an error status (``status``) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMResponseError(LLMError):
    """The back end answered with something that is not a chat completion."""
