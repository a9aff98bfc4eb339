"""``igc-nas`` command line: one module per command group, each keeping its parser and its action together.

Exit statuses: 0 on success; 2 for bad input, reported on one line
(``igc-nas: error: ...``) naming the problem; 1 for a search that could not
train anything or an internal error (a bug: reported as one, with the
traceback under ``-v``); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Sequence

from igcnas.cli import latency, refine, results, search, space, storage, zoo
from igcnas.cli._common import Parser
from igcnas.errors import BadInput, SearchFailed

__all__ = ["main", "build_parser", "renamed_command"]

COMMAND_GROUPS = (zoo, space, search, refine, results, storage, latency)
# Old command names that still run the renamed command (hidden from the help), with a one-line notice on stderr.
RENAMED_COMMANDS = {"proxy-check": "rank-check"}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="igc-nas",
                    description="Multi-objective architecture search over interleaved group convolution (IGC) "
                                "networks.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress at INFO level, and show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def renamed_command(argv: list[str]) -> list[str]:
    """``argv`` with an old command name replaced by its new one (the command is the first word that is not
    an option: igc-nas's own options take no value), saying so on stderr so that scripts can be updated."""
    i = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if i is None or argv[i] not in RENAMED_COMMANDS:
        return argv
    new = RENAMED_COMMANDS[argv[i]]
    print(f"igc-nas: {argv[i]} was renamed {new}; running igc-nas {new}", file=sys.stderr)
    return argv[:i] + [new] + argv[i + 1:]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        args = build_parser().parse_args(renamed_command(argv))
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
        return int(args.func(args) or 0)
    except BadInput as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"igc-nas: error: {message}", file=sys.stderr)
        return 2
    except SearchFailed as exc:
        print(f"igc-nas: search failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("igc-nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - anything else is a bug in igc-nas, and is reported as one
        if verbose:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"igc-nas: internal error: {type(exc).__name__}: {first}"
              + ("" if verbose else " (run with -v for the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
