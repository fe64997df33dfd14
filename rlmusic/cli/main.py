"""The `rlmusic` command: routes ``rlmusic COMMAND ...`` to ``rlmusic.cli.<module>``.

A command module provides ``add_arguments(parser)`` and ``main(args) -> int | None``.
Modules are imported only when their command runs, so ``rlmusic --help`` stays fast and
``rlmusic db upgrade`` never loads torch. A user's mistake (``ValueError``, a missing
file, a database that cannot be reached, a full disk) is printed as one line naming the
problem, never as a traceback; Ctrl-C prints one line too.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

# name -> (module in rlmusic.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("corpus", "build and inspect melody corpora"),
    "pretrain": ("pretrain", "train the LSTM prior on a corpus"),
    "generate": ("generate", "sample melodies to MIDI (+ audio) and a manifest; optionally enqueue them"),
    "evaluate": ("evaluate", "RL Tuner's metrics, structure, originality and KL of a model or MIDI folder"),
    "tune": ("tune", "fine-tune a model with PPO (presets, TOML config, resume)"),
    "targets": ("targets", "plan a config's [targets]: the prior's projection onto them (lambda) and its KL floor"),
    "vae": ("vae", "melody VAE: train; interpolate between, sample and vary melodies in its latent space"),
    "reward": ("reward", "fit a reward model on the stored ratings; active selection; scores"),
    "simulate-raters": ("simulate", "simulated raters with a defined taste rate queued clips (tests, demos)"),
    "round": ("round", "one feedback round: fit reward model, tune, generate and enqueue"),
    "jobs": ("jobs", "the job queue: submit tune/round/generate jobs, list, show, cancel"),
    "worker": ("worker", "run queued jobs (heartbeats; lost jobs resume from their checkpoint)"),
    "sweep": ("sweep", "a grid of tuning runs on Ray Tune (or one after another), a summary table and plot"),
    "db": ("db", "database schema: upgrade, current, downgrade"),
    "ratings": ("ratings", "import/export ratings as CSV; export every judgement with its clips as JSON lines"),
    "raters": ("raters", "invite raters (a link; --researcher), revoke them, list them"),
    "study": ("study", "blind A/B studies between two models: create (with gold checks), pairs, report"),
    "app": ("app", "serve the Streamlit listening app"),
    "deploy": ("deploy", "the nginx site file that serves the app to raters elsewhere, behind TLS"),
    "harmonize": ("harmonize", "four-voice harmonisation of a melody (soprano kept) with its voice-leading report"),
    "revise": ("revise", "regenerate a span of a melody (or of one voice of a harmonisation), keep the rest"),
    "harmony": ("harmony", "four-voice chorale corpus, train and evaluate harmony models"),
}


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit


def overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: rlmusic COMMAND [options]", "       rlmusic --version", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `rlmusic COMMAND --help` for a command's options."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one command (imports its module)."""
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(f"rlmusic.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"rlmusic {command}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(_main=module.main)
    return parser


def user_error(exc: BaseException) -> str | None:
    """The one line to print for an error caused by the user's input or setup, else None
    (a bug: let the traceback show)."""
    if "db" in sys.modules:  # database errors, said in words with the URL (password hidden)
        import db

        message = db.explain_error(exc)
        if message is not None:
            return message
    if isinstance(exc, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:  # every file is written whole or not at all
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"{exc.strerror or 'no space left on device'}{where}; nothing was half-written: free some "
                "space and run the command again (tune: add --resume to continue from the last checkpoint)")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0
    if argv[0] in ("-V", "--version"):
        from rlmusic.environment import version_report

        print("\n".join(version_report()))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rlmusic: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(rest)
    try:
        code = args._main(args)
    except KeyboardInterrupt:
        print(f"rlmusic {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"rlmusic {command}: error: {message}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
