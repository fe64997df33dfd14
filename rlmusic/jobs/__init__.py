"""Jobs: runs recorded in the jobs table, the worker that takes them from the queue, and
Ray for what outgrows one machine.

Modules: ``record`` (``JobRecorder``: heartbeats, progress, curves, log tail, cancel, the
end; ``command_recorder`` for a command run by hand), ``worker`` (``Worker``: claim,
run, requeue lost jobs), ``cluster`` (a Ray session: local on demand or ``--address``),
``distributed`` (generation split across Ray tasks, same seeds as the local path),
``sweep`` (grid sweeps of tuning runs with Ray Tune or one after another, each trial a
job, a summary table and plot). Sits above tuning, feedback rounds and generation and
talks to ``db``; the command line (``rlmusic.cli``) sits above it.
"""
