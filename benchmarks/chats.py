"""Compression of real chats grown turn by turn: what the chat policy keeps, and what cache-stable mode
saves once a provider's prompt cache is counted.

    python benchmarks/chats.py --n 200 --strategy bm25 --rate 0.25

ShareGPT conversations (``sharegpt_v3_first3000_multiturn``, file order) with at least ``--min-messages``
messages up to their last user turn and ``--min-tokens`` tokens (gpt-4o). Each is replayed as a client
would send it: at every user turn, the history so far. Three modes: ``document`` (the policy before the
chat policy: the whole prompt compressed as one document), ``chat`` (the chat policy, whole prompt) and
``chat+stable`` (the chat policy in cache-stable mode, with a ``MessageCache``, as the server runs), and
the same with ``keep_recent=0`` (every message compressed when first sent, so its form never changes).

Billing model: at each turn, the leading messages identical to the previous turn's request are cached
(message granularity, so a conservative count) when they reach 1,024 tokens (OpenAI's minimum), and are
billed at ``--discount`` of the price; everything else at full price. The uncompressed prompt is the
baseline, with its own (perfect) prefix caching.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from typing import Any

import numpy as np

from occ_research import ChatPolicy, MessageCache, compress
from occ_research._tokens import count_messages_tokens
from occ_research.evals._datasets import _rows
from occ_research.strategies._policy import instruction_spans

MIN_CACHED = 1024
Messages = list[dict[str, Any]]


def conversations(n: int, min_messages: int, min_tokens: int, model: str) -> list[Messages]:
    found = []
    for row in _rows("sharegpt/sharegpt_v3_first3000_multiturn.jsonl.gz"):
        turns = [
            {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
            for t in row["conversations"]
            if t["from"] in ("human", "gpt")
        ]
        last_user = max((k for k, t in enumerate(turns) if t["role"] == "user"), default=-1)
        history = turns[: last_user + 1]
        if len(history) >= min_messages and count_messages_tokens(history, model) >= min_tokens:
            found.append(history)
        if len(found) >= n:
            break
    return found


def cached_tokens(previous: Messages | None, current: Messages, model: str, minimum: int) -> int:
    if previous is None:
        return 0
    same = 0
    for a, b in zip(previous, current, strict=False):
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            break
        same += 1
    tokens = count_messages_tokens(current[:same], model) - count_messages_tokens([], model) if same else 0
    return tokens if tokens >= minimum else 0


def replay(history: Messages, mode: str, args: argparse.Namespace, cache: MessageCache) -> dict[str, Any]:
    ends = [k + 1 for k, m in enumerate(history) if m["role"] == "user"]
    stats: dict[str, Any] = {
        "turns": 0,
        "user_emptied": 0,
        "final_instructions_changed": 0,
        "final_changed": 0,
        "stable_pairs": 0,
        "unstable_pairs": 0,
        "saved": [],
        "cached": [0, 0],  # tokens billed at the discount, tokens in all
        "cost": {d: [0.0, 0.0] for d in args.discount},  # compressed, uncompressed
        "ms": [],
    }
    sent_before: Messages | None = None
    original_before: Messages | None = None
    for end in ends:
        prompt = history[:end]
        started = time.perf_counter()
        if mode == "document":
            result = compress(prompt, args.strategy, rate=args.rate, chat=ChatPolicy(conversation=False))
        else:
            policy = ChatPolicy(keep_recent=0 if mode.endswith("recent=0") else 2)
            stable = mode.startswith("chat+stable")
            result = compress(
                prompt, args.strategy, rate=args.rate, chat=policy, cache_stable=stable, cache=cache
            )
        stats["ms"].append((time.perf_counter() - started) * 1000)
        sent = result.messages
        stats["turns"] += 1
        for old, new in zip(prompt, sent, strict=True):
            if old["role"] == "user" and old["content"].strip() and not new["content"].strip():
                stats["user_emptied"] += 1
        final_old, final_new = prompt[-1]["content"], sent[-1]["content"]
        stats["final_changed"] += final_old != final_new
        stats["final_instructions_changed"] += any(
            final_old[s:e] not in final_new for s, e in instruction_spans(final_old)
        )
        if sent_before is not None:
            for j, was in enumerate(sent_before):
                if was != prompt[j]:  # compressed in the previous turn
                    same = json.dumps(was) == json.dumps(sent[j])
                    stats["stable_pairs" if same else "unstable_pairs"] += 1
        stats["saved"].append(result.saved_tokens / result.original_tokens)
        for d in args.discount:
            for k, (now, before) in enumerate(((sent, sent_before), (prompt, original_before))):
                total = count_messages_tokens(now, args.model)
                cached = cached_tokens(before, now, args.model, args.min_cached)
                stats["cost"][d][k] += total - cached + d * cached
                if k == 0 and d == args.discount[0]:
                    stats["cached"][0] += cached
                    stats["cached"][1] += total
        sent_before, original_before = sent, prompt
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--strategy", default="bm25")
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--model", default="gpt-4o")
    parser.add_argument("--min-messages", type=int, default=6)
    parser.add_argument("--min-tokens", type=int, default=2000)
    parser.add_argument("--discount", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--min-cached", type=int, default=MIN_CACHED, help="shortest prefix a cache serves")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    chats = conversations(args.n, args.min_messages, args.min_tokens, args.model)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "n": len(chats),
        "strategy": args.strategy,
        "rate": args.rate,
        "modes": {},
    }
    print(
        f"{len(chats)} ShareGPT chats (>= {args.min_messages} messages, >= {args.min_tokens} tokens), "
        f"{args.strategy} at rate {args.rate}, replayed turn by turn; cached prefixes from "
        f"{args.min_cached} tokens"
    )
    header = "| mode | turns | user turns emptied | final instructions changed | final message changed | compressed messages re-sent identical | saved mean | p10 | p90 |"
    costs = " | ".join(f"net saving, cache at {d:.0%}" for d in args.discount)
    print(header + f" prompt tokens cached | {costs} | ms per turn (median) |")
    print("|---" * (10 + len(args.discount) + 1) + "|")
    for mode in ("document", "chat", "chat+stable", "chat+stable, keep_recent=0"):
        cache = MessageCache(100_000)
        runs = [replay(history, mode, args, cache) for history in chats]
        saved = np.array([s for r in runs for s in r["saved"]])
        total = {k: sum(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], int)}
        pairs = total["stable_pairs"] + total["unstable_pairs"]
        net = {
            d: 1 - sum(r["cost"][d][0] for r in runs) / sum(r["cost"][d][1] for r in runs)
            for d in args.discount
        }
        ms = float(np.median([m for r in runs for m in r["ms"]]))
        identical = total["stable_pairs"] / pairs if pairs else 1.0
        hit = sum(r["cached"][0] for r in runs) / sum(r["cached"][1] for r in runs)
        report["modes"][mode] = {
            **total,
            "identical": identical,
            "saved_mean": float(saved.mean()),
            "saved_p10": float(np.percentile(saved, 10)),
            "saved_p90": float(np.percentile(saved, 90)),
            "net_saving": {str(d): v for d, v in net.items()},
            "ms_median": ms,
            "cached_share": hit,
        }
        print(
            f"| {mode} | {total['turns']} | {total['user_emptied']} | {total['final_instructions_changed']} | "
            f"{total['final_changed']} | {identical:.1%} ({pairs}) | {saved.mean():.1%} | "
            f"{np.percentile(saved, 10):.1%} | {np.percentile(saved, 90):.1%} | {hit:.1%} | "
            + " | ".join(f"{net[d]:.1%}" for d in args.discount)
            + f" | {ms:.1f} |"
        )
    report["seconds"] = time.perf_counter() - started
    print(f"\n{report['date']}, {report['machine']}, {report['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
