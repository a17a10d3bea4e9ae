#!/bin/bash
# Restores the Table 1 sweep's finished runs from results/example/table1 (their small outputs;
# a run's table.csv marks it done) into results/table1, so that on a new clone
#   xrai-bench sweep --pdb 2CEX_A,2DHB --n 50000,500000,5000000 --xrai-steps 10000 --emc-budget 60m --out results/table1
# continues at the next unfinished run. Runs already in results/table1 are left as they are.
set -e
cd "$(dirname "$0")/.."
for run in results/example/table1/*/n*/; do
  rel=${run#results/example/table1/}; dst=results/table1/${rel%/}
  if [ -e "$dst" ]; then echo "kept $dst"; continue; fi
  mkdir -p "$(dirname "$dst")"; cp -r "${run%/}" "$dst"; echo "restored $dst"
done
