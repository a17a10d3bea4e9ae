#!/bin/bash
# copies the Table 1 sweep's small outputs (tables, logs, curves, plots) into results/example/table1
set -e
cd "$(dirname "$0")/.."
S=results/table1; D=results/example/table1
mkdir -p $D
for prot in $S/*/; do
  p=$(basename $prot)
  for run in $prot/n*; do
    [ -f $run/table.parquet ] || continue
    src=$run; dst=$D/$p/$(basename $run)
    rm -rf $dst; mkdir -p $dst/xrai $dst/emc $dst/plots
    cp $src/run.toml $src/table.md $src/table.csv $src/xrai.log $src/emc.log $dst/
    cp $src/xrai/curve.csv $src/xrai/summary.json $src/xrai/output.json $dst/xrai/
    cp $src/emc/log.csv $src/emc/output.json $dst/emc/
    for m in xrai emc; do for f in fsc.csv resolution.json; do [ -f $src/eval/$m/$f ] && cp $src/eval/$m/$f $dst/$m/ || true; done; done
    cp $src/plots/*.png $dst/plots/
  done
done
for f in table.md table.csv scaling.md sweep.log; do [ -f $S/$f ] && cp $S/$f $D/ || true; done
if ls $S/*.png >/dev/null 2>&1; then mkdir -p $D/plots; cp $S/*.png $D/plots/; fi
if [ -d $S/plots ]; then mkdir -p $D/plots; cp $S/plots/*.png $D/plots/; fi
du -sh $D
