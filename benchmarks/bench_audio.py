"""Audio rendering speed: a 16-second clip rendered (synth + OGG) vs served from the cache.

    .venv/bin/python benchmarks/bench_audio.py [--clips 8] [--seconds 16] [--tempo 120]

Prints the route, the one-off synthesiser load, per-clip times (synthesis, encoding,
total), the uncached / cached ratio of ``clip_audio``, and what the app's check of a
stored clip (path under ``RLMUSIC_HOME``, SHA-256 of the bytes) adds to reading it. The acceptance bar is a
16-second clip well under a second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

import db
from rlmusic.audio.render import clip_audio, duration_seconds, encode, render_samples, step_seconds
from rlmusic.audio.synth import synth_route
from rlmusic.music.representation import DEFAULT_VOCAB, STEPS_PER_QUARTER


def random_melody(rng: np.random.Generator, steps: int) -> list[int]:
    """Notes of 1-8 steps on a C major scale, some rests: a plausible generated clip."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76]
    tokens: list[int] = []
    while len(tokens) < steps:
        length = int(rng.choice([1, 2, 2, 4, 4, 8]))
        if rng.random() < 0.1:
            tokens += [DEFAULT_VOCAB.REST] * length
        else:
            tokens += [DEFAULT_VOCAB.pitch_to_token(int(rng.choice(scale)))]
            tokens += [DEFAULT_VOCAB.HOLD] * (length - 1)
    return tokens[:steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips to render")
    parser.add_argument("--seconds", type=float, default=16.0, help="clip length in seconds")
    parser.add_argument("--tempo", type=float, default=120.0, help="quarter notes per minute")
    parser.add_argument("--instrument", default="piano", help="instrument name")
    args = parser.parse_args()

    steps = int(round(args.seconds / step_seconds(args.tempo)))
    rng = np.random.default_rng(0)
    melodies = [random_melody(rng, steps) for _ in range(args.clips)]

    t0 = time.perf_counter()
    route = synth_route()
    load = time.perf_counter() - t0
    print(f"route: {route}")
    print(f"synthesiser + soundfont load (once per process): {load * 1000:.0f} ms")
    print(f"clips: {args.clips} x {steps} steps ({steps / STEPS_PER_QUARTER:g} beats) = "
          f"{duration_seconds(melodies[0], args.tempo):.2f} s of audio each")

    synth_t, encode_t, sizes = [], [], []
    for tokens in melodies:
        t0 = time.perf_counter()
        samples = render_samples(tokens, tempo=args.tempo, instrument=args.instrument)
        t1 = time.perf_counter()
        data = encode(samples, 44100, "ogg")
        t2 = time.perf_counter()
        synth_t.append(t1 - t0)
        encode_t.append(t2 - t1)
        sizes.append(len(data))
    total = [s + e for s, e in zip(synth_t, encode_t)]
    print(f"per clip (median): synthesis {statistics.median(synth_t) * 1000:.0f} ms, "
          f"OGG encode {statistics.median(encode_t) * 1000:.0f} ms, "
          f"total {statistics.median(total) * 1000:.0f} ms (max {max(total) * 1000:.0f} ms), "
          f"{statistics.median(sizes) / 1024:.0f} KiB")

    with tempfile.TemporaryDirectory() as cache:
        uncached, cached = [], []
        for i, tokens in enumerate(melodies):
            t0 = time.perf_counter()
            clip_audio(i, tokens, cache, tempo=args.tempo, instrument=args.instrument)
            uncached.append(time.perf_counter() - t0)
        for i, tokens in enumerate(melodies):
            t0 = time.perf_counter()
            path = clip_audio(i, tokens, cache, tempo=args.tempo, instrument=args.instrument)
            path.read_bytes()  # what the app does with a cached clip
            cached.append(time.perf_counter() - t0)
        # The app's check before it plays a stored file (db.verified_bytes: the path lies
        # under RLMUSIC_HOME, the bytes hash to the clip's recorded SHA-256) vs a plain read.
        files = [clip_audio(i, tokens, cache, tempo=args.tempo, instrument=args.instrument)
                 for i, tokens in enumerate(melodies)]
        hashes = [db.sha256_file(f) for f in files]
        plain, checked = [], []
        for _ in range(50):
            for f, sha in zip(files, hashes):
                t0 = time.perf_counter()
                f.read_bytes()
                plain.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert db.verified_bytes(f, sha, home=cache) is not None
                checked.append(time.perf_counter() - t0)
    u, c = statistics.median(uncached), statistics.median(cached)
    print(f"clip_audio uncached {u * 1000:.1f} ms, cached (incl. read) {c * 1000:.2f} ms: "
          f"ratio {u / c:.0f}x")
    r, v = statistics.median(plain), statistics.median(checked)
    print(f"serving a stored clip: read {r * 1000:.3f} ms, read + path and SHA-256 check {v * 1000:.3f} ms "
          f"(ratio {v / r:.2f}x, +{(v - r) * 1000:.3f} ms per clip)")


if __name__ == "__main__":
    main()
