"""Does the evidence for the elected rag policy hold for what the server sends?

    python benchmarks/served_form.py --n 300

The winner is elected on prompts compressed as documents (the evaluation harness: the whole prompt
compressible, the question its last paragraph), but the server compresses every request under the chat
policy in cache-stable mode (instructions kept whole, the rate applied to the rest, the turn ranked against
its own instructions). This measures both forms of the same `nq-multidoc` prompts (random and retrieved
distractors, gold passage at 0/4/9 of 10) with the elected preset: the share that still holds a gold answer
(Wilson 95% intervals) and the tokens saved. Model-free; the two forms are compared prompt by prompt.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

from occ_research import ChatPolicy, CompressOptions
from occ_research._messages import text_slots
from occ_research._presets import writable_preset_dir
from occ_research.evals import contains_answer, load_examples, read_policy
from occ_research.evals._stats import wilson
from occ_research.strategies import strategy_from_config

FORMS: dict[str, CompressOptions] = {
    "as evaluated (document)": {},
    "as served (chat policy, cache-stable, keep_recent=0)": {
        "chat": ChatPolicy(keep_recent=0),
        "cache_stable": True,
    },
}


def share(kept: list[bool]) -> str:
    low, high = wilson(sum(kept), len(kept))
    return f"{sum(kept) / len(kept):.1%} [{low:.1%}, {high:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--kind", default="rag", help="the policy's kind whose preset is measured")
    args = parser.parse_args()
    started = time.perf_counter()
    entry = read_policy(writable_preset_dir() / "winner.toml")[args.kind]
    if entry is None:
        raise SystemExit(f"winner.toml elects nothing for {args.kind!r} prompts")
    config, rate = entry
    strategy = strategy_from_config(config)
    print(f"{args.kind} preset: {strategy.config()} at rate {rate}; nq-multidoc, n = {args.n}, seed 0")
    print("| distractors | form | answer kept | saved mean | prompts that differ in kept |")
    print("|---|---|---:|---:|---:|")
    for distractors in ("random", "retrieved"):
        examples = load_examples("nq-multidoc", n=args.n, distractors=distractors, gold_position=[0, 4, 9])
        kept: dict[str, list[bool]] = {}
        for form, options in FORMS.items():
            options = options.copy()
            options["rate"] = rate
            kept[form], saved = [], []
            for example in examples:
                result = strategy.compress(example.messages, **options)
                text = "\n".join(slot.text for slot in text_slots(result.messages))
                kept[form].append(contains_answer(text, example.answers))
                saved.append(result.saved_tokens / result.original_tokens)
            first = next(iter(kept.values()))
            differ = sum(a != b for a, b in zip(first, kept[form], strict=True))
            print(
                f"| {distractors} | {form} | {share(kept[form])} | {sum(saved) / len(saved):.1%} | {differ} |"
            )
    machine = f"{platform.processor() or platform.machine()}, {platform.python_version()}"
    print(f"\n{date.today().isoformat()}, {machine}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
