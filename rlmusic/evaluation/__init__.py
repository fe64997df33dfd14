"""Evaluation of melodies and models: the table ``rlmusic evaluate`` prints (RL Tuner's
metrics as Magenta computes them, our own variants under their own names, structure,
originality, log-likelihood and KL to a reference prior) and its printing and plots.

Modules: ``table`` (``evaluate_tokens``, ``evaluate_model``, the reference prior) and
``report`` (``format_table``, ``plot_tables``). Uses music, corpus and models; never
tuning, feedback, the database or the app.
"""
