"""The Python API: six verbs, exported from ``rlmusic`` (see docs/api.md).

    import rlmusic
    prior = rlmusic.load_model()                      # shipped prior, or load_model("DIR")
    env = rlmusic.make_env(prior, steps=32)           # a gymnasium.Env with the default theory reward
    cfg = rlmusic.TuneConfig.preset("rl-tuner", timesteps=4096)
    tuned = rlmusic.tune(prior, cfg, out="runs/t")    # trains, saves to out, returns the tuned model
    tokens = rlmusic.generate(tuned, n=8, steps=32, seed=0)   # (8, 32) integer array
    table = rlmusic.evaluate(tokens)                  # the same dict as `rlmusic evaluate --json`

The heavy parts (torch, Stable-Baselines3) are imported when a verb first runs, so
``import rlmusic`` stays cheap and the database commands never load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only; nothing is imported at run time
    import gymnasium
    import numpy as np

    from rlmusic.models.lstm import MelodyLSTM
    from rlmusic.tuning.config import TuneConfig


def load_model(directory: str | Path | None = None, device: str = "cpu") -> MelodyLSTM:
    """A model directory (a prior or a tuned model; None: the prior shipped in the
    package), loaded in eval mode. ``model.source_dir`` remembers where it came from."""
    from rlmusic.models.checkpoint import load_model as load
    from rlmusic.runtime import resolve_device

    return load(directory, device=resolve_device(device))


def make_env(model: MelodyLSTM | str | Path | None = None, steps: int = 32,
             config: TuneConfig | None = None, **kwargs: Any) -> gymnasium.Env:
    """A ``gymnasium.Env`` (``envs.MelodyEnv``, one melody of ``steps`` tokens per episode)
    whose reward is the theory reward of ``config`` (default: ``TuneConfig()``'s, the
    default rules) plus ``beta * log p_prior(a_t)`` under ``model``. ``kwargs`` go to
    ``MelodyEnv`` (e.g. ``beta``, ``reward_model``, ``human_weight``)."""
    from envs.melody import MelodyEnv
    from rlmusic.models.checkpoint import default_prior_dir
    from rlmusic.tuning.config import TuneConfig
    from rlmusic.tuning.rewards import build_rewards, novelty_corpus

    config = (config or TuneConfig()).replace(steps=steps)
    config.validate()
    prior = model if model is not None and not isinstance(model, (str, Path)) else load_model(model)
    source = getattr(prior, "source_dir", None) or default_prior_dir()
    rewards = build_rewards(config, prior.vocab, novelty_corpus(config, Path(source)))
    options = {"theory_weight": config.effective_theory_weight, "beta": config.effective_beta, **kwargs}
    return MelodyEnv(prior, steps=steps, theory_reward=rewards.theory, final_reward=rewards.final,
                     progress_reward=rewards.progress, **options)


def tune(model: MelodyLSTM, config: TuneConfig, out: str | Path, *, reward_model: str | Path | Any = None,
         device: str = "auto", resume: bool = False, progress: bool = False) -> MelodyLSTM:
    """Fine-tune ``model`` with PPO under ``config`` into the folder ``out`` and return the
    tuned model (loaded from ``out``). A prior is tuned against itself; a tuned model
    keeps its own reference prior for the KL. ``reward_model``: a directory of
    ``rlmusic reward fit`` (loaded behind its guard) or an object with ``score``. A config
    with ``method = "dpg"`` trains a prior to its targets by distributional policy gradient."""
    from rlmusic.models.checkpoint import read_model_meta, reference_prior_dir
    from rlmusic.tuning.run import tune as run

    source = getattr(model, "source_dir", None)
    if source is None:
        raise ValueError("tune needs a model loaded from a directory (rlmusic.load_model), "
                         "so that its provenance can name it")
    kind = read_model_meta(source).get("provenance", {}).get("kind", "prior")
    prior_dir = Path(source) if kind == "prior" else reference_prior_dir(source)
    init_model = None if kind == "prior" else Path(source)
    reward_dir = None
    if isinstance(reward_model, (str, Path)):
        from rlmusic.feedback.guard import load_guarded
        from rlmusic.runtime import resolve_device

        reward_dir, reward_model = Path(reward_model), load_guarded(reward_model, resolve_device(device), config.guard)
    saved = run(config, out, prior_dir, reward_model=reward_model, reward_model_dir=reward_dir,
                init_model=init_model, device=device, resume=resume, progress=progress)
    if saved is None:
        raise RuntimeError(f"tuning stopped before the end; continue with rlmusic.tune(..., resume=True) on {out}")
    return load_model(saved, device="cpu")


def generate(model: MelodyLSTM, n: int = 16, steps: int = 64, seed: int = 0, temperature: float = 1.0,
             top_k: int | None = None) -> np.ndarray:
    """``n`` melodies of ``steps`` tokens sampled from ``model`` -> (n, steps) int64 array;
    the same seed gives the same melodies."""
    from rlmusic.models.generate import sample_tokens

    return sample_tokens(model, n, steps, seed=seed, temperature=temperature, top_k=top_k)


def evaluate(tokens: np.ndarray, *, model: MelodyLSTM | None = None, prior: MelodyLSTM | str | Path | None = None,
             corpus: str | None = None, key: str = "C major") -> dict[str, Any]:
    """The evaluation table of melodies (N, T), the same dict as ``rlmusic evaluate --json``.

    ``prior``: the reference for log-likelihood and KL (default: ``model``'s own reference
    from its provenance, else the shipped prior); ``model``: the model that sampled the
    tokens, which adds ``kl_per_step`` and ``kl_per_note``; ``corpus``: novelty against
    this corpus (default: the reference prior's training corpus; ``"none"`` skips it).
    """
    import numpy as np

    from rlmusic.evaluation.table import evaluate_tokens
    from rlmusic.models.checkpoint import model_ref, reference_prior_dir, training_corpus

    if prior is None or isinstance(prior, (str, Path)):
        source = getattr(model, "source_dir", None)
        prior = load_model(prior if prior is not None else reference_prior_dir(source))
    reference = getattr(prior, "source_dir", None)
    if corpus is None and reference is not None:
        corpus = training_corpus(reference)
    elif corpus is not None and corpus.lower() == "none":
        corpus = None
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    table = evaluate_tokens(tokens, prior.vocab, prior=prior, model=model, corpus=corpus, key=key)
    table["reference_prior"] = model_ref(reference) if reference is not None else None
    table["reference_corpus"] = corpus
    return table
