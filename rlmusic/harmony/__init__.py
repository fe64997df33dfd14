"""Four-voice harmony: the seed's feedforward counterpoint (soprano -> alto, tenor, bass),
a Coconet-style masked infilling model sampled with blocked Gibbs, harmonising a melody,
revising a span of a melody or of one voice, and the voice-leading report.

Modules: ``voice_leading`` (the report), ``feedforward`` and ``masked`` (the two models),
``checkpoint`` (model directories, the shipped model), ``gibbs`` (training masks, blocked
Gibbs, ``fill``), ``repair`` (redrawing the cells of parallels and crossings), ``train``,
``likelihood`` (held-out NLL, Coconet's framewise NLL), ``midi_io`` (MIDI melodies and
harmonisations in and out of the models' key and range), ``harmonize``, ``revise``,
``evaluate`` (a model against Bach's held-out chorales). Uses ``rlmusic.music``,
``rlmusic.corpus``, ``rlmusic.models`` (the melody prior, provenance) and
``rlmusic.runtime``; knows nothing of tuning, feedback, evaluation, the database or the app.
"""
