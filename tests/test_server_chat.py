"""Chats through the reference server (uvicorn, the openai SDK): the chat policy and cache-stable mode are
the default, ``occ.frozen_messages`` is honoured and checked."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from occ_research.server import Route, Settings, create_app

from .test_chat import chat, instructions
from .test_server import KEY, echoed, sdk, serve, upstream

_ = (serve, upstream)  # fixtures


@pytest.fixture(scope="module")
def chat_proxy(serve: Any, upstream: str) -> str:
    settings = Settings(api_keys=(KEY,), preset="bm25-q25", routes=(Route("gpt-", f"{upstream}/v1"),))
    return str(serve(create_app(settings)))


def forwarded(proxy: str, messages: list[dict[str, Any]], **occ: Any) -> tuple[list[dict[str, Any]], Any]:
    extra = {"occ": occ} if occ else None
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_body=extra
    )
    return echoed(raw.parse())["messages"], raw.headers


def test_chats_keep_user_turns_and_earlier_turns_are_resent_byte_identical(chat_proxy: str) -> None:
    messages = chat(9)
    ends = [k + 1 for k, m in enumerate(messages) if m["role"] == "user"]
    turns = []
    for end in ends[3:]:
        sent, headers = forwarded(chat_proxy, messages[:end])
        assert headers["x-occ-compression"] in ("on", "skipped-short")
        turns.append(sent)
    final = turns[-1]
    assert final[-1] == messages[-1]  # the exchange in progress (the server keeps no earlier one verbatim)
    for old, new in zip(messages, final, strict=True):
        assert new["content"].strip()
        if old["role"] == "user":
            assert all(piece in new["content"] for piece in instructions(old["content"]))
    assert any(new != old for old, new in zip(messages, final, strict=True))
    for before, after in itertools.pairwise(turns):  # nothing sent is ever rewritten: the cache keeps hitting
        assert after[: len(before)] == before


def test_frozen_messages_are_forwarded_as_they_came(chat_proxy: str) -> None:
    messages = chat(9)
    sent, _ = forwarded(chat_proxy, messages)
    assert sent[4] != messages[4]
    frozen, _ = forwarded(chat_proxy, messages, frozen_messages=9)
    assert frozen[:9] == messages[:9] and frozen[10] != messages[10]
    marked = [*messages[:6], {**messages[6], "cache_control": {"type": "ephemeral"}}, *messages[7:]]
    sent, _ = forwarded(chat_proxy, marked)
    assert sent[:7] == marked[:7]


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
def test_bad_frozen_messages_are_400s(chat_proxy: str, value: Any) -> None:
    response = httpx.post(
        f"{chat_proxy}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o", "messages": chat(2), "occ": {"frozen_messages": value}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "occ.frozen_messages"
