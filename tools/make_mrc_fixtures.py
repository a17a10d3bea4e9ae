"""Write tests/data/mrc/*.mrc: tiny maps made by another program (the `mrcfile` package) so that
tests/mrc_maps.rs can check that xrai-bench reads what the field's tools write. Made once and
committed; regenerate with

    pip install mrcfile && python3 tools/make_mrc_fixtures.py

Voxel (x, y, z) of every map holds v = x + 10 y + 100 z mapped to the mode's range (numpy index
order [z, y, x], as MRC stores it):
  mode0_int8.mrc      10^3, int8     v % 256 - 128,     voxel 1.5 A,  origin fields (-7.5, -7.5, -7.5) A
  mode1_int16.mrc     10^3, int16    v - 300,           voxel 2.25 A, nxstart/nystart/nzstart = -5
  mode2_float32.mrc   10^3, float32  v * 0.25 - 1.5,    voxel 0.8 A,  origin 0
  mode6_uint16.mrc     8^3, uint16   v + 60000,         voxel 3.0 A,  origin 0
"""
import os
import numpy as np
import mrcfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "tests", "data", "mrc")
os.makedirs(out, exist_ok=True)


def values(m):
    z, y, x = np.meshgrid(np.arange(m), np.arange(m), np.arange(m), indexing="ij")
    return x + 10 * y + 100 * z


def write(name, data, voxel, origin=None, start=None):
    path = os.path.join(out, name)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        if origin is not None:
            mrc.header.origin = origin
        if start is not None:
            mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = start
    with mrcfile.open(path) as mrc:
        print(name, "mode", int(mrc.header.mode), mrc.data.shape, mrc.voxel_size)


write("mode0_int8.mrc", (values(10) % 256 - 128).astype(np.int8), 1.5, origin=(-7.5, -7.5, -7.5))
write("mode1_int16.mrc", (values(10) - 300).astype(np.int16), 2.25, start=(-5, -5, -5))
write("mode2_float32.mrc", (values(10) * 0.25 - 1.5).astype(np.float32), 0.8)
write("mode6_uint16.mrc", (values(8) + 60000).astype(np.uint16), 3.0)
