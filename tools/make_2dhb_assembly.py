#!/usr/bin/env python3
"""Writes datasets/pdb/2dhb.pdb: horse deoxyhaemoglobin (PDB 2DHB) as its biological assembly.

The deposited entry holds one alpha-beta dimer (chains A, B, with their haems); the tetramer is
the dimer plus its copy under the crystallographic two-fold given in REMARK 350 (BIOMT operator 2:
x -> -x, z -> -z). This script applies every BIOMT operator of biomolecule 1 to the ATOM and HETATM
records of chains A and B, names the copies' chains C and D, drops waters, and keeps the header.
Usage: python3 tools/make_2dhb_assembly.py ../shared/pdb/2dhb.pdb datasets/pdb/2dhb.pdb
"""
import sys


def biomt(lines):
    ops = {}
    for line in lines:
        if line.startswith("REMARK 350   BIOMT"):
            row = int(line[18]) - 1
            f = line.split()
            k = int(f[3])
            ops.setdefault(k, [[0.0] * 4 for _ in range(3)])[row] = [float(v) for v in f[4:8]]
    return [ops[k] for k in sorted(ops)]


def main(src, dst):
    lines = open(src).read().splitlines()
    ops = biomt(lines)
    assert len(ops) == 2, f"expected 2 BIOMT operators, found {len(ops)}"
    header = [l for l in lines if l.startswith(("HEADER", "TITLE", "COMPND", "SOURCE", "KEYWDS", "EXPDTA", "AUTHOR", "CRYST1"))]
    atoms = [l for l in lines if l.startswith(("ATOM", "HETATM")) and l[17:20] != "HOH"]
    out = header + [
        "REMARK   1 BIOLOGICAL ASSEMBLY 1 OF PDB ENTRY 2DHB (REMARK 350 BIOMT 1 AND 2 APPLIED);",
        "REMARK   1 CHAINS C AND D ARE CHAINS A AND B UNDER BIOMT OPERATOR 2. WATERS REMOVED.",
    ]
    serial = 0
    rename = [{"A": "A", "B": "B"}, {"A": "C", "B": "D"}]
    for k, m in enumerate(ops):
        for l in atoms:
            x, y, z = float(l[30:38]), float(l[38:46]), float(l[46:54])
            p = [m[i][0] * x + m[i][1] * y + m[i][2] * z + m[i][3] for i in range(3)]
            serial += 1
            chain = rename[k][l[21]]
            out.append(f"{l[:6]}{serial:5d}{l[11:21]}{chain}{l[22:30]}{p[0]:8.3f}{p[1]:8.3f}{p[2]:8.3f}{l[54:]}")
    out.append("END")
    open(dst, "w").write("\n".join(out) + "\n")
    print(f"{dst}: {serial} atoms in chains A-D")


if __name__ == "__main__":
    main(*sys.argv[1:3])
