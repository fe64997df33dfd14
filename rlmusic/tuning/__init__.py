"""Fine-tuning with PPO: ``TuneConfig`` and its presets, targets and their projection, the
policy built exactly from the prior, KL control and the run's callbacks, curves, and the run
itself.

Modules: ``config`` (``TuneConfig``, presets in ``presets/``), ``targets`` (``[targets]``
parsed, the information projection: lambda and the KL floor), ``target_training`` (a run
with targets: the plan, the reward lambda . phi, lambda's dual ascent), ``dpg`` (distributional policy gradient to the projection: the GDC++
loss, Z, the proposal update, lambda's refit), ``dpg_run`` (``DPGRun``: a run with
``method = "dpg"``), ``policy`` (``PriorPolicy``
for sb3-contrib's RecurrentPPO), ``ppo`` (``MelodyPPO``: that RecurrentPPO with minibatches of
whole melodies), ``callbacks`` (``KLController``, ``KLControl``,
``RunBookkeeping``), ``curves`` (``metrics.csv``, TensorBoard, ``plot_curves``), ``run``
(``TuneRun``, ``tune``). Uses envs, models, music, corpus and evaluation; a reward model
is handed in as an object with ``score`` (this package never imports ``rlmusic.feedback``).
"""
