#!/usr/bin/env bash
# scripts/test_seeds.sh K [PYTEST ARGS...]: run the tests that assert a statistic of
# training or sampling (marked `statistical`, tests/seeding.py) once for each test seed
# 0..K-1 (RLMUSIC_TEST_SEED), then print per test how many seeds pass, which fail, and the
# figures each test recorded (record_property) seed by seed. Exit 1 if any test failed on
# any seed. Extra arguments go to pytest, e.g. `scripts/test_seeds.sh 5 tests/test_rounds.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:?usage: scripts/test_seeds.sh K [PYTEST ARGS...]}
shift
case "$K" in ''|*[!0-9]*) echo "test_seeds: K must be a whole number >= 1, got '$K'" >&2; exit 2 ;; esac
[ "$K" -ge 1 ] || { echo "test_seeds: K must be >= 1, got $K" >&2; exit 2; }
make -s setup
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((s = 0; s < K; s++)); do
  echo "== RLMUSIC_TEST_SEED=$s"
  RLMUSIC_TEST_SEED=$s .venv/bin/python -m pytest -q -m statistical -p no:cacheprovider \
    --junitxml="$out/seed$s.xml" "$@" | tail -n 1 || true
done
.venv/bin/python - "$out" "$K" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, k = Path(sys.argv[1]), int(sys.argv[2])
results: dict[str, dict[int, str]] = {}
figures: dict[str, dict[int, dict[str, str]]] = {}
for s in range(k):
    path = out / f"seed{s}.xml"
    if not path.is_file():
        continue
    for case in ET.parse(path).iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}".replace("tests/", "", 1)
        bad = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        results.setdefault(name, {})[s] = "failed" if bad else "skipped" if skipped else "passed"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if props:
            figures.setdefault(name, {})[s] = props
width = max((len(n) for n in results), default=10)
failed_any = False
print(f"\n{'test':<{width}}  passed of {k}  failed seeds")
for name in sorted(results):
    by_seed = results[name]
    passed = sum(v == "passed" for v in by_seed.values())
    failed = [s for s, v in sorted(by_seed.items()) if v != "passed"]
    failed_any |= bool(failed)
    print(f"{name:<{width}}  {passed:>6} of {k}  {' '.join(map(str, failed)) or '-'}")
    for key in sorted({key for props in figures.get(name, {}).values() for key in props}):
        values = [figures[name].get(s, {}).get(key, "-") for s in range(k)]
        print(f"{'':<{width}}    {key}: {' '.join(values)}")
print(f"\n{len(results)} statistical tests, {sum(all(v == 'passed' for v in r.values()) and len(r) == k for r in results.values())} passed on all {k} seeds")
sys.exit(1 if failed_any else 0)
PY
