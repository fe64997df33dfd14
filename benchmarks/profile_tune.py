"""Where a whole ``rlmusic tune`` run spends its time, at T = 32, 128, 256.

For each T: one whole run (``rlmusic.tuning.run.TuneRun.train``: plan, rollouts, PPO
updates, evaluations, checkpoints, the saved model) of ``--timesteps`` env steps, first
timed without a profiler (env steps per second of the whole run, best of ``--repeats``
rounds that alternate the Ts),
then once under cProfile, whose cumulative times are split into the parts below and
printed in microseconds per env step (so a part that grows with T shows as a growing
number; cProfile's own overhead inflates the Python-heavy parts alike at every T):

- ``rollout``: SB3's ``collect_rollouts`` (with the periodic evaluations, which a callback
  starts at a rollout's start), of which
  ``env``: the env's step (``MelodyBatch.step``), of which ``prior``: the frozen prior's
  forward, ``theory``: the per-step theory reward, ``progress``: the terms paid as the
  melody grows (structure, a targets run's lambda . phi), ``final``: the end-of-melody
  terms, ``infos``: the per-env info dicts; ``policy``: the policy's forward;
  ``callbacks``: the KL control and bookkeeping; ``buffer``: the rollout buffer;
- ``update``: ``RecurrentPPO.train`` (minibatches, forward, backward, Adam);
- ``evaluate``: the periodic and final evaluations (sampling + scoring);
- ``checkpoint``/``save``: SB3 zips and the saved model.

``python benchmarks/profile_tune.py [--steps 32 128 256] [--timesteps 32768] [--preset default]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
import warnings
from pathlib import Path

import torch

from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.run import TuneRun

# (part, parent part, function, caller): a function is (file ending, name); the part's time is the
# function's cumulative time, only its calls from ``caller`` when one is given
ENV_STEP = ("envs/melody.py", "step")
PARTS = [
    ("rollout", None, ("ppo_recurrent.py", "collect_rollouts"), None),
    ("env", "rollout", ENV_STEP, None),
    ("prior", "env", ("rlmusic/models/lstm.py", "step"), ENV_STEP),
    ("theory", "env", ("envs/rewards.py", "reward"), ENV_STEP),
    ("theory", "env", ("envs/rewards.py", "__call__"), ENV_STEP),
    ("progress", "env", ("", "progress"), ENV_STEP),
    ("final", "env", ("", "final"), ENV_STEP),
    ("infos", "rollout", ("envs/melody.py", "<listcomp>"), ("envs/melody.py", "step_wait")),
    ("policy", "rollout", ("recurrent/policies.py", "forward"), None),
    ("callbacks", "rollout", ("callbacks.py", "on_step"), ("ppo_recurrent.py", "collect_rollouts")),
    ("buffer", "rollout", ("recurrent/buffers.py", "add"), ("ppo_recurrent.py", "collect_rollouts")),
    ("update", None, ("ppo_recurrent.py", "train"), None),
    ("evaluate", None, ("rlmusic/tuning/run.py", "evaluate"), None),
    ("checkpoint", None, ("rlmusic/tuning/run.py", "checkpoint"), None),
    ("save", None, ("rlmusic/tuning/run.py", "save"), None),
]


def _is(func: tuple[str, int, str], spec: tuple[str, str]) -> bool:
    return func[2] == spec[1] and func[0].endswith(spec[0])


def parts(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per part (see ``PARTS``) from a profile."""
    out: dict[str, float] = {}
    for func, (_cc, _nc, _tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        for part, _parent, spec, caller in PARTS:
            if not _is(func, spec):
                continue
            if caller is None:
                out[part] = out.get(part, 0.0) + ct
            else:
                out[part] = out.get(part, 0.0) + sum(t[3] for c, t in callers.items() if _is(c, caller))
    return out


def run_once(config: TuneConfig, profile: bool) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = TuneRun(config, Path(tmp) / "run", force=True, progress=False)
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.runcall(run.train, progress=False)
        else:
            run.train(progress=False)
        wall = time.perf_counter() - start
        steps = run.model.num_timesteps
    return steps / wall, (parts(pstats.Stats(profiler)) if profiler is not None else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--timesteps", type=int, default=32_768, help="env steps of each whole run")
    parser.add_argument("--preset", default="default", help="the tune preset (steps and timesteps overridden)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per T (best of)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-profile", action="store_true", help="only the timed runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"preset={args.preset} timesteps={args.timesteps} threads={args.threads} torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()})")
    rates: dict[int, float] = {}
    configs = {steps: TuneConfig.preset(args.preset, steps=steps, timesteps=args.timesteps) for steps in args.steps}
    for round_ in range(args.repeats):  # rounds alternate the Ts, so a load that comes and goes hits each alike
        for steps, config in configs.items():
            rate = run_once(config, profile=False)[0]
            rates[steps] = max(rates.get(steps, 0.0), rate)
            print(f"round {round_ + 1}: T={steps}: {rate:,.0f} env steps/s (whole run)", flush=True)
    profiles: dict[int, dict[str, float]] = {}
    for steps, config in configs.items():
        if not args.no_profile:
            rate, profiles[steps] = run_once(config, profile=True)
            profiles[steps]["total"] = args.timesteps / rate
    print(f"best of {args.repeats}: " + ", ".join(f"T={s}: {r:,.0f}" for s, r in rates.items()))
    first = min(rates)
    for steps, rate in rates.items():
        print(f"T={steps} / T={first}: {rate / rates[first]:.2f}x")
    if not profiles:
        return
    parent = {p: up for p, up, *_ in PARTS}
    depth = {p: 0 if up is None else 1 + (parent[up] is not None) for p, up in parent.items()}
    print("\nmicroseconds per env step under cProfile (inflated alike at every T)")
    print(f"{'part':<14}" + "".join(f"{'T=' + str(s):>10}" for s in profiles))
    for name in ["total", *parent]:
        label = "  " * depth.get(name, 0) + name
        print(f"{label:<14}" + "".join(f"{1e6 * profiles[s].get(name, 0.0) / args.timesteps:>10.1f}"
                                       for s in profiles))


if __name__ == "__main__":
    main()
