"""Every instruction sent to a summarising LLM, in one place and versioned.

Change a prompt by adding a new version: cached calls and published results stay tied to the version that
produced them (it is part of the strategy's parameters, hence of every cache key and result).
"""

from __future__ import annotations

from ..exceptions import InvalidParameterError

PROMPTS: dict[str, dict[str, str]] = {
    "v1": {
        "document": (
            "Summarise the text below in at most {words} words. Keep names, numbers, dates and technical "
            "terms exactly as written. Write only the summary.\n\nText:\n{text}"
        ),
        "focused": (
            "Summarise the text below in at most {words} words, keeping everything that helps answer the "
            "question. Keep names, numbers, dates and technical terms exactly as written. Write only the "
            "summary.\n\nQuestion: {question}\n\nText:\n{text}"
        ),
        "conversation": (
            "Summarise this earlier part of a conversation in at most {words} words: who asked for what, what "
            "was decided or answered, and any facts, names or numbers needed later. Write only the summary."
            "\n\nConversation:\n{text}"
        ),
    }
}
LATEST = "v1"


def render(version: str, kind: str, *, text: str, words: int, question: str = "") -> str:
    try:
        template = PROMPTS[version][kind]
    except KeyError:
        raise InvalidParameterError(f"no summarisation prompt {kind!r} in version {version!r}") from None
    return template.format(text=text, words=max(words, 5), question=question)
