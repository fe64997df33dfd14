"""Corpora: sources (music21's Bach chorales and O'Neill's Irish tunes, MIDI folders),
encoding of one piece, the ``Corpus`` container with deterministic splits, building,
the cache, and the n-gram index of a split.

Modules: ``sources`` (names, items, cache keys), ``encode`` (one piece to tokens),
``pieces`` (``Piece``, ``Corpus``, splits), ``build`` (in worker processes), ``cache``
(``load_corpus``), ``index`` (``corpus_index``). Uses ``rlmusic.music``; knows nothing
of training, tuning, feedback, the database or the app.
"""
