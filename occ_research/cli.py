"""The ``occ`` command line: ``occ eval``, ``occ report``, ``occ serve``, ``occ compress``, ``occ strategies``, ``occ demo``.

Errors the user can fix (bad JSON, bad shapes, unknown names, out-of-range values) end with a one-line
message on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import DEFAULT_STRATEGY, compress, list_presets, list_strategies
from ._tokens import DEFAULT_MODEL
from .exceptions import InvalidInputError, OCCError


def _param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is read as JSON when it parses (numbers, booleans), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _read_prompt(source: str) -> tuple[Any, dict[str, Any] | None]:
    """The prompt (messages or text) and, for a request body, the body it came from."""
    if source == "-":
        raw = sys.stdin.read()
    else:
        try:
            with open(source, encoding="utf-8") as handle:
                raw = handle.read()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc.strerror}") from exc
    if raw.lstrip()[:1] not in ("[", "{"):
        return raw, None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(data, dict):
        if not isinstance(data.get("messages"), list):
            raise InvalidInputError("a JSON object must be a chat request with a 'messages' list")
        return data["messages"], data
    return data, None


def _cmd_compress(args: argparse.Namespace) -> int:
    prompt, body = _read_prompt(args.file)
    result = compress(
        prompt,
        args.strategy,
        preset=args.preset,
        rate=args.rate,
        target_tokens=args.target_tokens,
        question=args.question,
        model=args.model,
        seed=args.seed,
        compress_system=args.compress_system,
        **dict(args.param),
    )
    if args.stats:
        output: Any = result.stats()
    elif isinstance(prompt, str):
        output = {"text": result.text, "stats": result.stats()}
    else:
        messages = result.messages if body is None else {**body, "messages": result.messages}
        output = {"messages" if body is None else "request": messages, "stats": result.stats()}
    json.dump(output, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


def _cmd_strategies(args: argparse.Namespace) -> int:
    print("strategies:")
    for name, line in list_strategies().items():
        print(f"  {name:<10} {line}")
    print("presets:")
    for name, line in list_presets().items():
        print(f"  {name:<18} {line}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .evals import run_demo

    print(run_demo(rate=args.rate, model=args.model))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .evals import evaluate, find_suite, load_suite

    suite = load_suite(find_suite(args.suite))
    run = evaluate(
        args.suite,
        args.output,
        limit=args.limit,
        progress=lambda it, n: tqdm(it, total=n, desc=suite.name, unit="example"),
        executor=args.executor,
    )
    print(f"report: {run / 'report.md'}")
    if args.limit is not None:
        print("winner: not elected from a --limit run (a smoke run); winner.toml unchanged")
    elif not args.no_winner:
        _write_winner(run, suite.min_fidelity)
    return 0


def _write_winner(run: Path, min_fidelity: float | None = None) -> None:
    from ._presets import writable_preset_dir
    from .evals import select_winners, write_policy

    winners = select_winners(run, min_fidelity)
    for kind, winner in winners.items():
        if winner is None:
            print(f"winner for {kind}: none passes the rule (forwarded uncompressed)")
        else:
            retained = "-" if winner.help_retained is None else f"{winner.help_retained:.3f}"
            print(
                f"winner for {kind}: {winner.label} at rate {winner.rate:g} (savings {winner.savings:.1%}, "
                f"help retained {retained}, reader {winner.reader_check})"
            )
    path = write_policy(winners, writable_preset_dir() / "winner.toml", run)
    print(f"policy -> {path}")


def _cmd_report(args: argparse.Namespace) -> int:
    from .evals._report import write_report

    print(f"report: {write_report(args.run)}")
    if args.select:
        _write_winner(Path(args.run), args.min_fidelity)
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from .server import Settings, create_app, uvicorn_options

    if args.config:
        os.environ["OCC_SERVER_CONFIG"] = str(Path(args.config).resolve())
    # every settings, keys-file or preset problem is found here, before uvicorn starts: one line, exit 2
    settings = Settings.load(os.environ.get("OCC_SERVER_CONFIG"))
    create_app(settings)
    if not settings.api_keys and args.host not in LOOPBACK:
        raise InvalidInputError(
            f"no API keys configured (OCC_API_KEYS): refusing to listen on {args.host}, only on loopback"
        )
    uvicorn.run(
        "occ_research.server._app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        **uvicorn_options(settings),
    )
    return 0


def _rate(text: str) -> float | str:
    """``--rate``: a number, or ``auto``; anything else goes on as text, for the library to refuse it with
    the same one-line message as a rate out of range."""
    try:
        return float(text)
    except ValueError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="occ", description="Prompt compression toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("compress", help="compress messages (JSON) or text read from a file or stdin")
    p.add_argument(
        "file", nargs="?", default="-", help="messages JSON, a chat request JSON, or text; - for stdin"
    )
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, help=f"strategy name (default {DEFAULT_STRATEGY})")
    p.add_argument("--preset", help="preset name or .toml path (overrides --strategy)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--rate",
        type=_rate,
        help="fraction of the prompt's tokens to keep, 0 < rate <= 1, or 'auto' (rankers: a budget per "
        "prompt from where relevance falls off)",
    )
    budget.add_argument("--target-tokens", type=int, help="token budget for the whole prompt")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"target model, for token counting (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--question", help="question to compress for (default: last paragraph of the last user turn)"
    )
    p.add_argument(
        "--param", type=_param, action="append", default=[], metavar="KEY=VALUE", help="strategy parameter"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compress-system", action="store_true", help="allow compressing system messages")
    p.add_argument("--stats", action="store_true", help="print only the numbers")
    p.set_defaults(handler=_cmd_compress)

    p = commands.add_parser("strategies", help="list strategies and presets")
    p.set_defaults(handler=_cmd_strategies)

    p = commands.add_parser("eval", help="run an evaluation suite, write its report, pick the winner")
    p.add_argument("suite", help="suite name (evals/NAME.toml) or path")
    p.add_argument(
        "--limit", type=int, help="at most N examples per dataset (a smoke run: no winner is elected)"
    )
    p.add_argument("--output", help="run folder (default: evals/runs/SUITE-TIME); an existing one is resumed")
    p.add_argument("--no-winner", action="store_true", help="do not write strategies/winner.toml")
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="where the work runs (default: the suite's): local threads, or Ray tasks and actors on the "
        "cluster RAY_ADDRESS names (else a local Ray instance); needs the [ray] extra",
    )
    p.set_defaults(handler=_cmd_eval)

    p = commands.add_parser("report", help="write the report of a run folder")
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--select", action="store_true", help="also pick the winner and write strategies/winner.toml"
    )
    p.add_argument(
        "--min-fidelity", type=float, help="lower bound of the help retained (default: the suite's)"
    )
    p.set_defaults(handler=_cmd_report)

    p = commands.add_parser("serve", help="serve POST /v1/chat/completions with compression")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--config", help="server settings TOML (see occ_research/server/_settings.py)")
    p.set_defaults(handler=_cmd_serve)

    p = commands.add_parser("demo", help="compress real examples from the shared datasets and print a table")
    p.add_argument("--rate", type=float, default=0.25)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except OCCError as exc:
        print(f"occ: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
