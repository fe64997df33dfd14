"""The ``rlmusic`` command: ``main`` routes each command to its module here (one module
per command group: corpus, pretrain, generate, evaluate, tune, reward, simulate, round,
db, ratings, app; ``options`` holds the flags several share). Command modules read
and write the database; the packages below them never do.
"""
