"""rlmusic: a melody LSTM fine-tuned with PPO on music theory, human ratings and KL."""

__version__ = "0.1.0"
