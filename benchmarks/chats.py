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

Answer fidelity, ``--needle``: the ``needle-chat`` set (``occ_research.evals._chat_sets``: a generated fact
in an old user turn of a real chat, asked for in a final user turn), compressed once per conversation as the
server does (no question given: the chat policy finds it) in five modes, ``document`` and the chat policy
with ``keep_recent`` 2 and 0, with and without cache-stable mode. Model-free: the share of compressed prompts
that still hold the fact's value (Wilson 95% intervals), overall and for the needles that sit in text the
chat policy may compress (not in a user turn's instructions). ``--likelihood K``: on the first K
conversations that fit the scoring model's context, the value's log-likelihood under the embedded
SmolLM2-135M (``AnswerScorer``) after the original, the compressed prompts and the final question alone,
as help retained (the README's definition: ratio of sums over the examples where the context helped, 95%
bootstrap interval). Per-example scores go to ``--records`` (JSON Lines) as they are computed, so an
interrupted run resumes.

    python benchmarks/chats.py --needle --n 500 --rates 0.5 0.25 --likelihood 12 --records ll.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from occ_research import ChatPolicy, MessageCache, compress
from occ_research._messages import text_slots
from occ_research._tokens import count_messages_tokens
from occ_research.evals import AnswerScorer, Example, contains_answer, load_examples
from occ_research.evals._chat_sets import needle_in_instructions
from occ_research.evals._datasets import _rows
from occ_research.evals._stats import bootstrap_ratio_of_sums, wilson
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


#: the ways a chat reaches the compressor: (chat policy, cache-stable mode), as ``compress`` takes them
NEEDLE_MODES: dict[str, tuple[ChatPolicy, bool]] = {
    "document": (ChatPolicy(conversation=False), False),
    "chat, keep_recent=2": (ChatPolicy(keep_recent=2), False),
    "chat, keep_recent=0": (ChatPolicy(keep_recent=0), False),
    "chat+stable, keep_recent=2": (ChatPolicy(keep_recent=2), True),
    "chat+stable, keep_recent=0": (ChatPolicy(keep_recent=0), True),
}


def share(kept: list[bool]) -> str:
    low, high = wilson(sum(kept), len(kept))
    return f"{sum(kept) / len(kept):.1%} [{low:.1%}, {high:.1%}] (n = {len(kept)})" if kept else "-"


def needle_compress(example: Example, mode: str, rate: float, args: argparse.Namespace) -> Messages:
    """The prompt as the server would forward it: no question given, the chat policy of ``mode``."""
    policy, stable = NEEDLE_MODES[mode]
    return compress(
        example.messages, args.strategy, rate=rate, chat=policy, cache_stable=stable, model=args.model
    ).messages


def needle_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    examples = load_examples(
        "needle-chat",
        n=args.n,
        min_messages=args.min_messages,
        min_tokens=args.min_tokens,
        placement=args.placement,
        question=args.question,
        seed=args.seed,
        model=args.model,
    )
    exposed = [not needle_in_instructions(e) for e in examples]
    print(
        f"{len(examples)} needle-chat conversations (placement {args.placement}, {args.question} question, real "
        f"history >= {args.min_messages} messages and {args.min_tokens} tokens, seed {args.seed}); "
        f"{sum(exposed)} needles outside their turn's instructions; {args.strategy}, no question given"
    )
    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "n": len(examples),
        "exposed": sum(exposed),
        "placement": args.placement,
        "question": args.question,
        "strategy": args.strategy,
        "modes": {},
    }
    print("| mode | rate | value kept | value kept, needle outside instructions | saved mean |")
    print("|---|---:|---|---|---:|")
    for mode in NEEDLE_MODES:
        for rate in args.rates:
            kept, saved = [], []
            for example in examples:
                sent = needle_compress(example, mode, rate, args)
                text = "\n".join(slot.text for slot in text_slots(sent))
                kept.append(contains_answer(text, example.answers))
                before = count_messages_tokens(example.messages, args.model)
                saved.append(1 - count_messages_tokens(sent, args.model) / before)
            hard = [k for k, e in zip(kept, exposed, strict=True) if e]
            report["modes"][f"{mode} @ {rate:g}"] = {
                "kept": sum(kept),
                "n": len(kept),
                "kept_exposed": sum(hard),
                "n_exposed": len(hard),
                "saved_mean": float(np.mean(saved)),
            }
            print(f"| {mode} | {rate:g} | {share(kept)} | {share(hard)} | {np.mean(saved):.1%} |", flush=True)
    if args.likelihood:
        report["likelihood"] = needle_likelihood(examples, args)
    report["seconds"] = time.perf_counter() - started
    print(f"\n{report['date']}, {report['machine']}, {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


def next_main(args: argparse.Namespace) -> None:
    """Help retained on the real next assistant reply (``sharegpt-next``) under each mode, on the first
    ``args.next`` conversations that fit the scoring model's context."""
    started = time.perf_counter()
    examples = load_examples(
        "sharegpt-next",
        n=args.n,
        min_messages=args.min_messages,
        min_tokens=args.min_tokens,
        model=args.model,
    )
    print(
        f"{len(examples)} sharegpt-next conversations (>= {args.min_messages} messages and {args.min_tokens} "
        f"tokens up to the last user turn); gold: the first 64 tokens of the real next reply; {args.strategy}, "
        "no question given"
    )
    args.likelihood = args.next
    report = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "strategy": args.strategy,
        "likelihood": needle_likelihood(examples, args, kept_column=False),
        "seconds": time.perf_counter() - started,
    }
    print(f"\n{report['date']}, {report['machine']}, {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


def needle_likelihood(
    examples: list[Example], args: argparse.Namespace, kept_column: bool = True
) -> dict[str, Any]:
    """Help retained on the first ``args.likelihood`` examples whose original prompt fits the scoring
    model's context; ``kept_column``: also whether the gold answer is still in the compressed prompt (a
    needle's value; not a next reply, which was never in the prompt)."""
    scorer = AnswerScorer(n_ctx=args.n_ctx, threads=args.threads, n_threads_batch=args.threads)
    path = Path(args.records) if args.records else None
    records: dict[tuple[str, str], float] = {}
    if path is not None and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                records[(row["example"], row["prompt"])] = row["ll"]
    variants = [(mode, rate) for mode in args.likelihood_modes for rate in args.likelihood_rates]

    def score(example: Example, label: str, messages: Messages) -> float:
        if (example.id, label) not in records:
            begun = time.perf_counter()
            value = scorer.loglikelihood(messages, example.answers[0])
            records[(example.id, label)] = value
            if path is not None:
                with path.open("a", encoding="utf-8") as sink:
                    row = {"example": example.id, "prompt": label, "ll": value}
                    sink.write(json.dumps({**row, "s": round(time.perf_counter() - begun, 1)}) + "\n")
        return records[(example.id, label)]

    scored: list[Example] = []
    skipped = 0
    for example in examples:
        if len(scored) >= args.likelihood:
            break
        if not scorer.fits(example.messages, example.answers[0]):
            skipped += 1
            continue
        score(example, "none", [{"role": "user", "content": example.question}])
        for mode, rate in variants:
            score(example, f"{mode} @ {rate:g}", needle_compress(example, mode, rate, args))
        score(example, "original", example.messages)  # last: the runner's order
        scored.append(example)
        print(f"  scored {len(scored)}/{args.likelihood}: {example.id}", flush=True)
    helped = [e for e in scored if records[(e.id, "original")] > records[(e.id, "none")]]
    out: dict[str, Any] = {
        "n": len(scored),
        "helped": len(helped),
        "skipped_too_long": skipped,
        "n_ctx": args.n_ctx,
    }
    print(
        f"\nhelp retained (SmolLM2-135M), first {len(scored)} conversations that fit {args.n_ctx} tokens "
        f"({skipped} longer ones skipped); the context helped in {len(helped)}:"
    )
    print(f"| mode | rate | help retained [95% CI] | {'value kept' if kept_column else 'saved mean'} |")
    print("|---|---:|---|---|")
    for mode, rate in variants:
        label = f"{mode} @ {rate:g}"
        gains = [records[(e.id, label)] - records[(e.id, "none")] for e in helped]
        full = [records[(e.id, "original")] - records[(e.id, "none")] for e in helped]
        interval = bootstrap_ratio_of_sums(gains, full)
        kept = [
            contains_answer(
                "\n".join(slot.text for slot in text_slots(needle_compress(e, mode, rate, args))), e.answers
            )
            for e in helped
        ]
        saved = [
            1
            - count_messages_tokens(needle_compress(e, mode, rate, args), args.model)
            / count_messages_tokens(e.messages, args.model)
            for e in helped
        ]
        out[label] = {
            "value": interval.value,
            "low": interval.low,
            "high": interval.high,
            "kept": sum(kept) if kept_column else None,
            "saved_mean": float(np.mean(saved)) if saved else None,
        }
        last = share(kept) if kept_column else f"{np.mean(saved):.1%}" if saved else "-"
        print(
            f"| {mode} | {rate:g} | {interval.value:.2f} [{interval.low:.2f}, {interval.high:.2f}] | {last} |"
        )
    return out


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
    parser.add_argument("--needle", action="store_true", help="answer fidelity on needle-chat instead")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.25], help="--needle: rates")
    parser.add_argument("--placement", default="sentence", help="--needle: sentence or document")
    parser.add_argument("--question", default="named", help="--needle: named or vague")
    parser.add_argument("--seed", type=int, default=0, help="--needle: the facts' seed")
    parser.add_argument("--likelihood", type=int, default=0, help="--needle: conversations to score")
    parser.add_argument("--likelihood-modes", nargs="+", default=list(NEEDLE_MODES)[1:], choices=NEEDLE_MODES)
    parser.add_argument("--likelihood-rates", type=float, nargs="+", default=[0.25])
    parser.add_argument("--n-ctx", type=int, default=4096, help="--needle: the scoring model's context")
    parser.add_argument("--records", default="", help="--needle, --next: JSON Lines of scores (resumes)")
    parser.add_argument("--next", type=int, default=0, help="help retained on the real next reply, K chats")
    parser.add_argument("--threads", type=int, default=1, help="the scoring model's llama.cpp threads")
    args = parser.parse_args()
    if args.needle:
        needle_main(args)
        return
    if args.next:
        next_main(args)
        return
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
