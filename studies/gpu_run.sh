#!/usr/bin/env bash
# One lease of a GPU machine for the studies (see docs/findings.md): the memorization sweep of
# reference recipes on the GPU, and the S2L probe study on the machine's CPU cores, in parallel.
# Expects wheels for diffusers, faiss-cpu, importlib_metadata and s2l-scan in .whl/ and the
# default reference model in build/ref-default/ (both carried).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 S2L_CACHE_DIR=/tmp/s2l-cache
OUT=${OUT:-/tmp/out}
nvidia-smi -L; nproc; python3 -c "import torch, diffusers, faiss; print(torch.__version__, diffusers.__version__)"
mkdir -p "$OUT/study"
timeout "${STUDY_SECONDS:-450}" python3 studies/s2l_study.py --model build/ref-default/model \
  --data build/ref-default/data --out "$OUT/study" --workers "${WORKERS:-13}" \
  >"$OUT/study.log" 2>&1 &
study=$!
timeout "${MEM_SECONDS:-450}" python3 studies/memorization.py --out /tmp/mem --device cuda \
  --samples 64 --guidance 3 7 --scan "$@" 2>&1 | grep --line-buffered -v "Warn\|shards" \
  | tee "$OUT/mem.log"
cp /tmp/mem/results.jsonl "$OUT/memorization.jsonl" 2>/dev/null
wait $study
tar czf "$OUT/study.tgz" -C "$OUT" study && rm -rf "$OUT/study"
tail -5 "$OUT/study.log"
