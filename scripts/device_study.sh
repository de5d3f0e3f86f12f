#!/bin/bash
# Train part of a study on a lent GPU machine (the `device` tool) from this checkout alone: no install, no network.
#
# Here, once:   scripts/device_study.sh pack STUDY
#   .xh/ (git-ignored; pass it in the run's `carry`): the Fashion-MNIST files, the cached domain extractor (so that
#   the device evaluates with the very extractor the record's other runs used; its weights hash is recorded) and
#   the study's record so far (so that recorded runs, the baseline cells among them, are not trained again).
#   The tree that travels is at most 64 MiB: stop the results autocommit, then `git rm -r -q --cached results docs`
#   and add `/results/` and `/docs/` to .git/info/exclude for the device session (`git reset -q` and remove the two
#   lines afterwards).
# There:        scripts/device_study.sh run STUDY CELLS WORKERS SECONDS
#   e.g. `scripts/device_study.sh run fmnist35-methods lime,deeplift-shap 10 540` in a run with timeout_s 600.
#   Trains with WORKERS processes (on the GPU; `CUDA_VISIBLE_DEVICES=` keeps them on the 16 CPUs), stops them
#   cleanly after SECONDS, and leaves the runs it finished and evaluated in $OUT/rec.tgz (a run cut off is lost).
# Here again:   mkdir -p results/STUDY && tar xzf FILES_AT/rec.tgz -C /tmp && cp -rn /tmp/rec/* results/STUDY/
#   (then commit results/)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
pack)
    [ $# -eq 2 ] || { echo "usage: $0 pack STUDY" >&2; exit 2; }
    home=${XAIGAN_HOME:-$HOME/.cache/xaigan}
    mkdir -p .xh/datasets/fashion-mnist .xh/metrics/domain
    cp /usr/share/datasets/fashion-mnist/*.gz .xh/datasets/fashion-mnist/
    cp "$home"/metrics/domain/domain-cnn32-*-k10_*.pt .xh/metrics/domain/
    rm -rf ".xh/record/$2" && mkdir -p .xh/record && { [ ! -d "results/$2" ] || cp -r "results/$2" .xh/record/; }
    grep -qx '/.xh/' .git/info/exclude 2>/dev/null || echo '/.xh/' >>.git/info/exclude
    du -sh .xh
    ;;
run)
    [ $# -eq 5 ] || { echo "usage: $0 run STUDY CELLS WORKERS SECONDS" >&2; exit 2; }
    study=$2 cells=$3 workers=$4 seconds=$5
    export XAIGAN_HOME=$PWD/.xh XAIGAN_OFFLINE=1 PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
    rec=/tmp/rec
    rm -rf "$rec" && mkdir -p "$rec"
    [ ! -d ".xh/record/$study" ] || cp -r ".xh/record/$study/." "$rec/"
    # SIGTERM: the workers checkpoint and exit; every run already evaluated stays in the record.
    timeout --signal=TERM --kill-after=30 "$seconds" python3 -m xaigan reproduce "configs/study/$study.yaml" \
        --budget paper --cells "$cells" --record "$rec" --out /tmp/runs --workers "$workers" --quiet || true
    # Only the runs recorded here go back (the files back from the device are limited to 16 MiB each).
    new=()
    for run in "$rec"/*/seed_*; do
        [ -f "$run/eval.json" ] && [ ! -d ".xh/record/$study/${run#"$rec"/}" ] && new+=("rec/${run#"$rec"/}")
    done
    echo "recorded here: ${#new[@]} runs: ${new[*]:-}"
    [ ${#new[@]} -eq 0 ] || tar czf "${OUT:-/tmp}/rec.tgz" -C /tmp "${new[@]}"
    ;;
*)
    echo "usage: $0 pack STUDY | run STUDY CELLS WORKERS SECONDS" >&2
    exit 2
    ;;
esac
