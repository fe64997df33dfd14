"""The GPU checks in one go, on a machine with an NVIDIA GPU.

    RLMUSIC_TORCH=cuda make setup            # the CUDA build of torch (scripts/setup.sh)
    .venv/bin/python benchmarks/gpu_checks.py [--out gpu_checks] [--timesteps 4096]

1. ``--device auto`` resolves to CUDA, and torch names the GPU;
2. on CUDA the PPO policy starts exactly at the prior (action probabilities within 1e-5
   of the prior's, on real melodies and samples), as the CPU test checks;
3. a real ``rlmusic tune --device auto`` run (shipped prior, default preset, T=32, 16 envs,
   ``--timesteps`` env steps) trains on CUDA, and its tuned model loads on the CPU;
4. ``rlmusic generate --device auto`` on CUDA: same seed, same clips twice;
5. ``benchmarks/bench_tune.py --n-envs 16 64 256 1024 --devices cpu cuda``: env steps/s
   against the number of parallel melodies on both devices (the figures for
   docs/benchmarks.md, "Fine-tuning on GPU").

Prints one line per check (``PASS``/``FAIL``) and writes everything to ``--out``.
``--allow-cpu`` runs checks 2-4 on the CPU when no GPU is present: a dry run of the
script itself, not a GPU measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def check(name: str, ok: bool, detail: str, results: list) -> None:
    results.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def policy_matches_prior(device: str) -> tuple[bool, str]:
    from rlmusic.models.checkpoint import default_prior_dir, load_model
    from rlmusic.music.representation import load_midi, midi_to_tokens
    from rlmusic.tuning.config import TuneConfig
    from rlmusic.tuning.policy import policy_log_probs
    from rlmusic.tuning.run import TuneRun

    run = TuneRun(TuneConfig(steps=32, n_envs=2, n_steps=32, batch_size=16, eval_corpus=""),
                  ROOT / "gpu_checks_unused", device=device)
    model = run.make_model(run.make_env())
    prior = load_model(default_prior_dir(), device=device)
    real = midi_to_tokens(load_midi(ROOT / "tests" / "data" / "melody.mid"), prior.vocab)
    tokens = torch.as_tensor(np.stack([real[:32], real[32:64]]))
    tokens = torch.cat([tokens, prior.sample(6, 32, generator=torch.Generator().manual_seed(1))]).to(device)
    with torch.no_grad():
        got = policy_log_probs(model.policy, tokens).exp()
        want = torch.softmax(prior(prior.with_bos(tokens))[0], dim=-1)
    error = float((got - want).abs().max())
    return error <= 1e-5, f"max |pi - p_prior| = {error:.2e} on {device} (bound 1e-5)"


def run(cmd: list[str], log: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    return code, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_checks", help="folder for logs, the tuned model and results.json")
    ap.add_argument("--timesteps", type=int, default=4096, help="env steps of the tuning check")
    ap.add_argument("--allow-cpu", action="store_true", help="dry run on the CPU when no GPU is present")
    ap.add_argument("--skip-bench", action="store_true", help="leave out check 5 (the throughput table)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    from rlmusic.runtime import resolve_device

    device = resolve_device("auto")
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(0) if cuda else "none"
    check("device auto", cuda, f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU {name}, "
          f"--device auto -> {device}", results)
    if not cuda and not args.allow_cpu:
        print("no GPU visible to torch: install the CUDA build (RLMUSIC_TORCH=cuda make setup) or pass --allow-cpu")
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return 1
    dev = str(device)
    check("policy starts at the prior", *policy_matches_prior(dev), results)

    rlmusic = [sys.executable, "-m", "rlmusic"]
    tuned = out / "tune"
    code, seconds = run([*rlmusic, "tune", "--out", str(tuned), "--force", "--device", "auto", "--no-progress",
                         "--timesteps", str(args.timesteps), "--threads", "1"], out / "tune.log")
    from rlmusic.models.checkpoint import load_model

    loaded = code == 0 and load_model(tuned, device="cpu") is not None
    rate = args.timesteps / seconds
    check("tune --device auto", loaded, f"exit {code}, {args.timesteps} env steps in {seconds:.1f} s "
          f"(~{rate:.0f} env steps/s including start and evaluation), model loads on the CPU", results)

    clips = []
    for k in range(2):
        code, _ = run([*rlmusic, "generate", "--model", str(tuned), "-n", "64", "--seed", "3", "--device", "auto",
                       "--out", str(out / f"gen{k}")], out / f"generate{k}.log")
        clips.append((out / f"gen{k}" / "manifest.jsonl").read_text() if code == 0 else f"exit {code}")
    check("generate --device auto", clips[0] == clips[1] and not clips[0].startswith("exit"),
          "64 clips, same seed twice: identical manifests" if clips[0] == clips[1] else "manifests differ", results)

    if not args.skip_bench:
        devices = ["cpu", "cuda"] if cuda else ["cpu"]
        code, seconds = run([sys.executable, str(ROOT / "benchmarks" / "bench_tune.py"), "--n-envs", "16", "64",
                             "256", "1024", "--devices", *devices, "--rollouts", "2", "--threads", "1"],
                            out / "bench_tune_n_envs.txt")
        check("bench_tune --n-envs", code == 0, f"{out / 'bench_tune_n_envs.txt'} ({seconds:.0f} s)", results)
        print((out / "bench_tune_n_envs.txt").read_text())
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    failed = [r["check"] for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
