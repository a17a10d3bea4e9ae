#!/usr/bin/env bash
# EMC on the Dragonfly-sized problem (10,000 Poisson frames at ~880 photons, full 128², level 6,
# β = 1, 4 iterations) as 1 rank × 1 thread, 1 rank × 2 threads and 2 ranks × 1 thread; each run's
# log.csv, meta.json and output.json are kept here, the models compared by compare.py.
# Needs a build with --features mpi. Usage: bash results/example/mpi/emc.sh [SCRATCH]
set -euo pipefail
BIN=${BIN:-target/release/xrai-bench}
SCRATCH=${1:-/tmp/xrai-mpi-emc}
HERE=$(dirname "$0")
mkdir -p "$SCRATCH"
ARGS=(emc --n 10000 --n-test 0 --poisson --rescale-total 880 --rescale mean --level 6 --bin 1 --iters 4 --beta 1 --model-seed 1 --force)
for cfg in 1x1 1x2 2x1; do
    ranks=${cfg%x*}; threads=${cfg#*x}
    out="$SCRATCH/emc-$cfg"
    if [ "$ranks" = 1 ]; then
        RAYON_NUM_THREADS=$threads "$BIN" "${ARGS[@]}" --out "$out" 2> "$HERE/emc-$cfg.log"
    else
        mpirun --oversubscribe --allow-run-as-root -np "$ranks" -x RAYON_NUM_THREADS=$threads \
            "$BIN" "${ARGS[@]}" --out "$out" 2> "$HERE/emc-$cfg.log"
    fi
    cp "$out/log.csv" "$HERE/emc-$cfg.log.csv"
done
