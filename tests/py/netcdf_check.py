#!/usr/bin/python3
"""Checks of climseg's CF-NetCDF output with python3-netcdf4 and python3-xarray (tests/py/test_netcdf_cli.cpp).

    netcdf_check.py output OUT.nc INPUT_GLOB        the output against its inputs (read by netCDF4 and by xarray)
    netcdf_check.py same-mask A.nc B.nc             the two files' masks and times are identical
    netcdf_check.py h5-mask OUT.nc PRED.h5          the NetCDF mask equals an HDF5 prediction's (h5py)
Exits non-zero with a message on the first failed check.
"""
import glob
import sys

import netCDF4
import numpy as np


def fail(msg):
    print("FAILED: " + msg)
    sys.exit(1)


def output(out, pattern):
    inputs = sorted(glob.glob(pattern))
    times, cal, units = [], None, None
    with netCDF4.Dataset(inputs[0]) as d:
        lat, lon = d["lat"][:], d["lon"][:]
        cal, units = d["time"].calendar, d["time"].units
    for f in inputs:
        with netCDF4.Dataset(f) as d:
            times += list(netCDF4.num2date(d["time"][:], d["time"].units, d["time"].calendar))
    with netCDF4.Dataset(out) as d:
        if d.Conventions != "CF-1.8":
            fail("Conventions " + d.Conventions)
        for a in ["title", "history", "source", "model", "weights", "weights_crc32c", "channels", "normalization"]:
            if a not in d.ncattrs():
                fail("no global attribute " + a)
        if d["time"].calendar != cal or d["time"].units != units:
            fail("time calendar/units %s %s vs %s %s" % (d["time"].calendar, d["time"].units, cal, units))
        got = list(netCDF4.num2date(d["time"][:], d["time"].units, d["time"].calendar))
        if got != times:
            fail("times %s vs inputs %s" % (got, times))
        if not np.array_equal(d["lat"][:], np.sort(lat)) or not np.array_equal(d["lon"][:], lon):
            fail("coordinates differ from the inputs'")
        m = d["mask"]
        if list(m.flag_values) != [0, 1, 2] or m.flag_meanings != "background tropical_cyclone atmospheric_river":
            fail("mask flags")
        if m.dimensions != ("time", "lat", "lon") or m.shape != (len(times), len(lat), len(lon)):
            fail("mask shape %s" % (m.shape,))
        v = m[:]
        if v.min() < 0 or v.max() > 2:
            fail("mask values out of 0..2")
    import xarray as xr
    ds = xr.open_dataset(out, use_cftime=True)
    if ds["mask"].dims != ("time", "lat", "lon"):
        fail("xarray dims %s" % (ds["mask"].dims,))
    if [t.isoformat() for t in ds["time"].values] != [t.isoformat() for t in times]:
        fail("xarray times")
    if ds["time"].values[0].calendar != cal:
        fail("xarray calendar %s" % ds["time"].values[0].calendar)
    print("ok: %d steps, calendar %s, %s" % (len(times), cal, out))


def same_mask(a, b):
    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        if not np.array_equal(x["time"][:], y["time"][:]):
            fail("times differ")
        if not np.array_equal(x["mask"][:], y["mask"][:]):
            fail("masks differ")
        t = x["time"][:]
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            fail("times not increasing")
    print("ok: same masks")


def h5_mask(out, pred):
    import h5py
    with netCDF4.Dataset(out) as x, h5py.File(pred, "r") as y:
        a, b = np.asarray(x["mask"][:]), y["prediction/mask"][...]
        if a.shape != b.shape or not np.array_equal(a, b):
            fail("NetCDF and HDF5 masks differ: %s vs %s, %d cells" % (a.shape, b.shape, int((a != b).sum())
                                                                       if a.shape == b.shape else -1))
    print("ok: NetCDF mask equals the HDF5 prediction's")


if __name__ == "__main__":
    {"output": output, "same-mask": same_mask, "h5-mask": h5_mask}[sys.argv[1]](*sys.argv[2:])
