"""rlmusic: a melody LSTM fine-tuned with PPO on music theory, human ratings and a KL
penalty to its prior.

The Python API (docs/api.md): ``load_model``, ``make_env``, ``TuneConfig``, ``tune``,
``generate``, ``evaluate``. The subpackages, one per concept (docs/design.md): ``music``,
``corpus``, ``models``, ``audio``, ``evaluation``, ``tuning``, ``feedback``, ``cli``.
"""

from rlmusic.api import evaluate, generate, load_model, make_env, tune
from rlmusic.tuning.config import TuneConfig

__version__ = "0.1.0"

__all__ = ["TuneConfig", "evaluate", "generate", "load_model", "make_env", "tune"]
