"""Gymnasium environments of rlmusic.

``import envs`` registers ``rlmusic/Melody-v0`` (``MelodyEnv``). Gymnasium >= 1.0 no
longer loads third-party ``gymnasium.envs`` entry points, so either import ``envs`` first
or let Gymnasium import it: ``gymnasium.make("envs:rlmusic/Melody-v0")``.
"""

from __future__ import annotations

ENV_ID = "rlmusic/Melody-v0"


def register_envs() -> None:
    """Register ``rlmusic/Melody-v0``; calling it again does nothing."""
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="envs.melody:MelodyEnv")


register_envs()

from envs.melody import BatchedMelodyVecEnv, MelodyBatch, MelodyEnv  # noqa: E402

__all__ = ["ENV_ID", "BatchedMelodyVecEnv", "MelodyBatch", "MelodyEnv", "register_envs"]
