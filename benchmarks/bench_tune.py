"""Throughput of the tuning loop (env steps/s) at T = 32, 64, 128, 256.

Setting: a default-size prior (2x256 LSTM, embed 64, random weights: speed does not
depend on them), 16 envs in ``BatchedMelodyVecEnv``, RecurrentPPO with 4 epochs,
rollouts of 128 steps per env, minibatches of 512, no theory reward (``--theory`` adds it).

Compares, in the same run:
- ``stock``: stock sb3-contrib: ``RecurrentPPO`` and its buffer (minibatches of consecutive
  steps, sequences padded), the same policy with sb3-contrib's ``_process_sequence`` (the
  LSTM stepped one time step at a time in Python whenever a minibatch holds an episode start);
- ``ours``: what ``rlmusic tune`` runs: ``MelodyPPO`` (minibatches of whole melodies, see
  ``rlmusic.tuning.ppo``) and ``PriorPolicy`` (one LSTM call per minibatch, see
  ``rlmusic.tuning.policy``);
- ``bare``: a plain torch loop doing the same LSTM arithmetic: per rollout step the
  policy, critic and prior forwards for 16 melodies; per update the actor and critic
  over whole melodies in minibatches, backward and Adam, 4 epochs.

Prints one line per T and the ratios. ``python benchmarks/bench_tune.py [--rollouts 2] [--rounds 3]``
(``--rounds``: ours and bare timed that many times each, alternating, best kept).

``--n-envs 16 64 256 1024 [--devices cpu cuda]``: instead, env steps/s of ours (the whole
loop: rollout + update, T = 32, one rollout of T steps per env, minibatches of
``--batch`` tokens, 4 epochs) against the number of melodies stepped in parallel, on each
device (``cuda`` only where torch sees a GPU), with the ratio to the first ``n_envs``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

from envs.melody import BatchedMelodyVecEnv
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.tuning.policy import PriorPolicy
from rlmusic.tuning.ppo import MelodyPPO

N_ENVS, N_STEPS, BATCH, EPOCHS = 16, 128, 512, 4


class StockPriorPolicy(PriorPolicy):
    """PriorPolicy with sb3-contrib's own step-by-step ``_process_sequence``."""

    _process_sequence = staticmethod(RecurrentActorCriticPolicy._process_sequence)


def tuning_rate(policy_cls, prior: MelodyLSTM, steps: int, rollouts: int, theory: bool, n_envs: int = N_ENVS,
                n_steps: int | None = None, batch: int = BATCH, device: str = "cpu") -> float:
    theory_reward = None
    if theory:
        from rlmusic.tuning.config import TuneConfig
        from rlmusic.tuning.rewards import build_rewards

        theory_reward = build_rewards(TuneConfig(steps=steps), prior.vocab, None).theory
    prior = prior.to(device)
    env = BatchedMelodyVecEnv(prior, n_envs=n_envs, steps=steps, theory_reward=theory_reward, device=device)
    n_steps = n_steps or steps * max(1, N_STEPS // steps)
    algo = RecurrentPPO if policy_cls is StockPriorPolicy else MelodyPPO
    model = algo(policy_cls, env, n_steps=n_steps, batch_size=batch, n_epochs=EPOCHS, learning_rate=1e-5,
                         policy_kwargs={"prior_config": asdict(prior.config)}, seed=0, device=device)
    model.policy.load_prior(prior)
    per_rollout = n_steps * n_envs
    model.learn(per_rollout)  # warm-up rollout + update
    start = time.perf_counter()
    model.learn(per_rollout * rollouts, reset_num_timesteps=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return per_rollout * rollouts / (time.perf_counter() - start)


def scaling(prior: MelodyLSTM, n_envs_list: list[int], devices: list[str], rollouts: int, batch: int,
            theory: bool) -> None:
    """Env steps/s of ours against n_envs, T = 32, per device."""
    steps = 32
    print(f"T={steps}, one rollout of {steps} steps per env, minibatch {batch}, epochs {EPOCHS}, theory={theory}")
    print(f"{'device':>7} {'n_envs':>7} {'env steps/s':>12} {'vs first':>9}")
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device:>7}  (no GPU visible to torch: not measured)")
            continue
        first = None
        for n_envs in n_envs_list:
            rate = tuning_rate(PriorPolicy, prior, steps, rollouts, theory, n_envs=n_envs, n_steps=steps,
                               batch=batch, device=device)
            first = first or rate
            print(f"{device:>7} {n_envs:>7} {rate:>12,.0f} {rate / first:>8.2f}x", flush=True)


def bare_rate(prior: MelodyLSTM, steps: int, rollouts: int) -> float:
    """The same LSTM arithmetic without SB3 or the env (one rollout + update per iteration)."""
    cfg = prior.config
    vocab = prior.vocab
    actor, critic = MelodyLSTM(cfg), MelodyLSTM(cfg)
    actor.lstm.dropout = critic.lstm.dropout = 0.0
    value_head = torch.nn.Linear(cfg.hidden_size, 1)
    params = [*actor.parameters(), *critic.parameters(), *value_head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-5)
    n_steps = steps * max(1, N_STEPS // steps)
    episodes_per_batch = max(1, BATCH // steps)

    def iteration() -> None:
        tokens = torch.empty(N_ENVS, n_steps, dtype=torch.long)
        with torch.no_grad():
            for t in range(n_steps):
                if t % steps == 0:
                    obs = torch.full((N_ENVS,), vocab.BOS)
                    sa = sc = sp = None
                logits, sa = actor.step(obs, sa)
                _, sc = critic.lstm(critic.embedding(obs)[:, None], sc)
                _, sp = prior.step(obs, sp)
                obs = torch.distributions.Categorical(logits=logits).sample()
                tokens[:, t] = obs
        melodies = tokens.reshape(-1, steps)  # (episodes, T)
        inputs = actor.with_bos(melodies)
        old_logp = torch.zeros(melodies.shape)
        advantages = torch.randn(melodies.shape)
        for _ in range(EPOCHS):
            for idx in torch.randperm(len(melodies)).split(episodes_per_batch):
                logits, _ = actor(inputs[idx])
                logp = torch.log_softmax(logits, -1).gather(-1, melodies[idx, :, None])[..., 0]
                hidden, _ = critic.lstm(critic.embedding(inputs[idx]))
                values = value_head(hidden)[..., 0]
                ratio = torch.exp(logp - old_logp[idx])
                loss = -(ratio * advantages[idx]).mean() + 0.5 * values.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 0.5)
                opt.step()

    iteration()  # warm-up
    start = time.perf_counter()
    for _ in range(rollouts):
        iteration()
    return n_steps * N_ENVS * rollouts / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--rollouts", type=int, default=2, help="timed rollouts (+1 warm-up) per setting")
    parser.add_argument("--rounds", type=int, default=1,
                        help="per T, time ours and bare this many times, alternating, and keep each one's best")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--theory", action="store_true", help="include the theory reward in the env")
    parser.add_argument("--skip-stock", action="store_true")
    parser.add_argument("--n-envs", type=int, nargs="+",
                        help="measure ours against these numbers of parallel melodies instead (e.g. 16 64 256 1024)")
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="with --n-envs: devices to measure (cpu cuda)")
    parser.add_argument("--batch", type=int, default=BATCH, help="with --n-envs: PPO minibatch size in tokens")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    prior = MelodyLSTM(ModelConfig()).eval()  # 2x256, embed 64, pitches 48..84
    if args.n_envs:
        print(f"threads={args.threads} torch {torch.__version__} cuda={torch.cuda.is_available()}")
        scaling(prior, args.n_envs, args.devices, args.rollouts, args.batch, args.theory)
        return
    print(f"threads={args.threads} n_envs={N_ENVS} n_steps~{N_STEPS} batch={BATCH} epochs={EPOCHS} "
          f"theory={args.theory}")
    print(f"{'T':>5} {'stock':>9} {'ours':>9} {'bare':>9} {'ours/stock':>11} {'ours/bare':>10}")
    results = {}
    for steps in args.steps:
        stock = float("nan") if args.skip_stock else tuning_rate(StockPriorPolicy, prior, steps, args.rollouts, args.theory)
        ours = bare = 0.0
        for _ in range(args.rounds):  # alternating, so a load that comes and goes hits both alike
            ours = max(ours, tuning_rate(PriorPolicy, prior, steps, args.rollouts, args.theory))
            bare = max(bare, bare_rate(prior, steps, args.rollouts))
        results[steps] = (stock, ours, bare)
        print(f"{steps:>5} {stock:>9.0f} {ours:>9.0f} {bare:>9.0f} {ours / stock:>11.2f} {ours / bare:>10.2f}",
              flush=True)
    lo, hi = min(results), max(results)
    for name, j in (("stock", 0), ("ours", 1), ("bare", 2)):
        print(f"{name}: T={hi} runs at {results[hi][j] / results[lo][j]:.2f}x the steps/s of T={lo}")


if __name__ == "__main__":
    main()
