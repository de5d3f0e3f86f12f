#!/bin/bash
# The studies still to finish, in the order of docs/studies.md, each continuing where its record stops (recorded runs
# are skipped, checkpoints under runs/ resumed). Run in the background on a quiet 2-core machine and commit results/
# as runs land; stop with `pkill -TERM -f "xaigan reproduce"` (the workers checkpoint and exit).
# COMMIT_EVERY=SECONDS commits the new records under results/ (and nothing else) that often, and once at the end, so
# that a machine lost mid-study loses only the runs in flight:
#   COMMIT_EVERY=300 nohup scripts/run_studies.sh > /tmp/studies.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
X=${XAIGAN:-.venv/bin/xaigan}

commit_results() {
    if [ -n "$(git status --porcelain -- results/)" ]; then
        git add results/ && git commit -q -m "results: runs recorded ($(date -u +%FT%H:%MZ))" -- results/ || true
    fi
}
if [ -n "${COMMIT_EVERY:-}" ]; then
    (while sleep "$COMMIT_EVERY"; do commit_results; done) &
    committer=$!
    trap 'kill $committer 2>/dev/null; commit_results' EXIT
fi

study() {  # study NAME [reproduce args...]
    local name=$1
    shift
    echo "== $name $(date -u +%FT%TZ)"
    "$X" reproduce "configs/study/$name.yaml" --budget paper --record "results/$name" --out "runs/$name" \
        --workers 2 --quiet "$@"
}

copy() {  # copy FROM TO CELL [SEEDS_GLOB]: a cell's records shared by two grids with the same settings
    mkdir -p "results/$2/$3"
    cp -rn "results/$1/$3/"${4:-seed_*} "results/$2/$3/"
}

study variants-confirm
study fmnist35-ema-controls
copy fmnist35-ema fmnist35-methods normal 'seed_[0-2]'
copy fmnist35-ema fmnist35-methods saliency 'seed_[0-2]'
study fmnist35-methods
study fmnist-efficiency-mlp
# fmnist35-ema-dose no longer copies fmnist35-ema-controls' normal and saliency-flat runs: those were scored with
# the extractor lost on 2026-12-04 (cac9d42d77ca96c8), every new run with the shipped one (docs/studies.md)
study fmnist35-ema-dose
# the DCGAN's equal-steps grid (fmnist-efficiency-steps) ran on a GPU (docs/studies.md, "On a GPU machine"): done
echo "== done $(date -u +%FT%TZ)"
