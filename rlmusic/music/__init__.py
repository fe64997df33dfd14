"""Music: the token vocabulary and conversions (tokens, notes, piano roll, MIDI), the
theory rules and their registry, phrase structure, originality, and RL Tuner's rewards
and metrics as Magenta computes them.

Modules: ``representation`` (vocabulary, ``Note``, conversions, music errors),
``context`` (keys, ``RuleContext``, ``MelodyView``), ``rules`` and ``reward`` (our rules,
their registry, ``TheoryConfig``, the batched per-step reward), ``structure``,
``originality``, ``metrics`` (our per-melody figures), ``targets`` (each target key's
per-melody feature, whose mean is its evaluation figure). numpy and pretty_midi only: this
package knows nothing of torch training, Stable-Baselines3, the envs, the database or
the app.
"""
