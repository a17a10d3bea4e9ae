"""How far the EMC models of emc.sh's runs are apart: over the voxels measured in both (−1 marks
a voxel no frame reached), the largest difference relative to the largest voxel and the relative
RMS difference; the voxels measured in one run only (at the edge of the data, where a
probability at the 1e-6 merge cut-off flips with the order of the sums); and the share of
training frames assigned to another rotation.
Usage: python3 results/example/mpi/compare.py [SCRATCH]"""
import sys
import numpy as np

scratch = sys.argv[1] if len(sys.argv) > 1 else "/tmp/xrai-mpi-emc"


def mrc(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        nx, ny, nz, mode = header[:4]
        assert mode == 2, f"{path}: mode {mode}"
        f.seek(1024 + int(header[23]))
        return np.frombuffer(f.read(), dtype="<f4")[: nx * ny * nz].astype(np.float64)


def poses(path):
    return np.loadtxt(path, delimiter=",", skiprows=1)


ref = mrc(f"{scratch}/emc-1x1/model.mrc")
ref_poses = poses(f"{scratch}/emc-1x1/poses_train.csv")
scale = np.abs(ref).max()
for cfg in ["1x2", "2x1"]:
    m = mrc(f"{scratch}/emc-{cfg}/model.mrc")
    p = poses(f"{scratch}/emc-{cfg}/poses_train.csv")
    moved = np.mean(np.any(np.abs(p - ref_poses) > 1e-9, axis=1))
    both = (m >= 0) & (ref >= 0)
    d = np.abs(m - ref)[both]
    rel_rms = np.sqrt(np.sum(d**2) / np.sum(ref[both] ** 2))
    print(f"{cfg} vs 1x1: max |Δ| / max = {d.max() / scale:.2e}, relative RMS {rel_rms:.2e} "
          f"over {both.sum()} voxels; measured in one run only: {np.sum((m >= 0) != (ref >= 0))}; "
          f"training frames on another rotation: {100 * moved:.2f} %")
