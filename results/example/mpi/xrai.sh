#!/usr/bin/env bash
# X-RAI over MPI on 2 cores: step time at global batch 64 (100 steps) and a 20-minute run, each as
# 1 rank × 2 threads and 2 ranks × 1 thread (32 images per rank and step); each run's
# summary.json and curve.csv are kept here. Needs a build with --features mpi.
# Usage: bash results/example/mpi/xrai.sh [SCRATCH] [steps|budget|all]
set -euo pipefail
BIN=${BIN:-target/release/xrai-bench}
SCRATCH=${1:-/tmp/xrai-mpi-xrai}
WHAT=${2:-all}
HERE=$(dirname "$0")
mkdir -p "$SCRATCH"
run() { # NAME RANKS THREADS ARGS…
    local name=$1 ranks=$2 threads=$3; shift 3
    local out="$SCRATCH/$name"
    if [ "$ranks" = 1 ]; then
        RAYON_NUM_THREADS=$threads "$BIN" xrai "$@" --force --out "$out" 2> "$HERE/$name.log"
    else
        mpirun --oversubscribe --allow-run-as-root -np "$ranks" -x RAYON_NUM_THREADS=$threads -x XRAI_OFFLINE \
            "$BIN" xrai "$@" --force --out "$out" 2> "$HERE/$name.log"
    fi
    cp "$out/summary.json" "$HERE/$name.summary.json"
    cp "$out/curve.csv" "$HERE/$name.curve.csv"
}
if [ "$WHAT" != budget ]; then
    for cfg in 1x2 2x1; do
        run "xrai-steps-$cfg" "${cfg%x*}" "${cfg#*x}" --steps 100 --batch 64 --test-images 1000 --eval-every 0
    done
fi
if [ "$WHAT" != steps ]; then
    for cfg in 1x2 2x1; do
        run "xrai-20m-$cfg" "${cfg%x*}" "${cfg#*x}" --budget 20m --batch 64
    done
fi
