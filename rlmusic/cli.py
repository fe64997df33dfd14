"""The `rlmusic` command.

Each subcommand lives in the module that owns the concept; this file only routes.
A command module provides ``add_arguments(parser)`` and ``main(args) -> int | None``
(the names can be overridden per command below). Modules are imported only when their
command runs, so ``rlmusic --help`` stays fast and ``rlmusic db upgrade`` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, add_arguments function, main function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "corpus": ("rlmusic.corpus", "add_arguments", "main", "build and inspect melody corpora"),
    "pretrain": ("rlmusic.pretrain", "add_arguments", "main", "train the LSTM prior on a corpus"),
    "generate": ("rlmusic.generate", "add_arguments", "main", "sample melodies to MIDI/WAV + manifest"),
    "evaluate": ("rlmusic.metrics", "add_arguments", "main", "music-theory, structure and originality table"),
    "tune": ("rlmusic.tune", "add_arguments", "main", "fine-tune a model with PPO"),
    "reward": ("rlmusic.reward_model", "add_arguments", "main", "fit a reward model on stored ratings"),
    "simulate-raters": ("rlmusic.simulate", "add_arguments", "main",
                        "simulated raters with a defined taste rate queued clips (tests, demos)"),
    "round": ("rlmusic.rounds", "add_arguments", "main",
              "one feedback round: fit reward model, tune, generate and enqueue"),
    "db": ("db.cli", "add_db_arguments", "db_main", "database schema: upgrade, current"),
    "ratings": ("db.cli", "add_ratings_arguments", "ratings_main", "import/export ratings as CSV"),
    "app": ("app.launch", "add_arguments", "main", "serve the Streamlit listening app"),
}


def _overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: rlmusic COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {spec[3]}" for name, spec in COMMANDS.items()]
    lines += ["", "Run `rlmusic COMMAND --help` for a command's options."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one command (imports its module)."""
    module_name, add_name, main_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"rlmusic {command}", description=help_text)
    getattr(module, add_name)(parser)
    parser.set_defaults(_main=getattr(module, main_name))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rlmusic: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(rest)
    try:
        code = args._main(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"rlmusic {command}: error: {exc}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
