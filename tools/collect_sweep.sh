#!/bin/bash
# Copies a sweep's small outputs (tables, settings, logs, curves, FSC, plots; never maps, image
# stacks or checkpoints) into a results/example folder:
#   tools/collect_sweep.sh results/table1 results/example/table1 [sweep.log]
# Each finished run (a folder with table.parquet, at any depth below the sweep) is copied whole
# over its earlier copy; runs not finished are left out, and their earlier copies kept.
set -e
cd "$(dirname "$0")/.."
S=${1:?usage: tools/collect_sweep.sh SWEEP_DIR EXAMPLE_DIR [LOG]}; D=${2:?usage: tools/collect_sweep.sh SWEEP_DIR EXAMPLE_DIR [LOG]}
mkdir -p "$D"
find "$S" -name table.parquet -mindepth 2 | sort | while read -r t; do
  src=$(dirname "$t"); dst=$D/${src#"$S"/}
  case "$src" in */.*) continue;; esac
  rm -rf "$dst"; mkdir -p "$dst"
  for f in run.toml table.md table.csv xrai.log emc.log; do [ -f "$src/$f" ] && cp "$src/$f" "$dst/"; done
  [ -d "$src/plots" ] && mkdir -p "$dst/plots" && cp "$src"/plots/*.png "$dst/plots/"
  for m in xrai emc; do
    [ -d "$src/$m" ] || continue
    mkdir -p "$dst/$m"
    for f in curve.csv summary.json output.json log.csv; do [ -f "$src/$m/$f" ] && cp "$src/$m/$f" "$dst/$m/"; done
    for f in fsc.csv resolution.json; do [ -f "$src/eval/$m/$f" ] && cp "$src/eval/$m/$f" "$dst/$m/"; done
  done
done
for f in table.md table.csv scaling.md; do [ -f "$S/$f" ] && cp "$S/$f" "$D/"; done
if [ -d "$S/plots" ]; then mkdir -p "$D/plots"; cp "$S"/plots/*.png "$D/plots/"; fi
[ -n "$3" ] && cp "$3" "$D/sweep.log"
du -sh "$D"
