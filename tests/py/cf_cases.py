#!/usr/bin/python3
"""Small CF-NetCDF files for climseg's NetCDF reader tests (tests/py/test_cf_reader.cpp), written with netCDF4.

    cf_cases.py DIR

Every value is known: channel c (DeepCAM order) at time step t, south-first row y and column x holds
    f(c, t, y, x) = 1000 c + 100 t + y + 0.01 x
in the network's units (the reader must undo packing, unit scales and a north-first latitude to get it back).
Grid: H = 6 latitudes, W = 8 longitudes; three time steps, 3-hourly, noleap calendar, days since 2000-01-01.

Cases (DIR/<case>/...):
  all/all.nc           every channel as its CAM name, (time, lat, lon) float, lat ascending, lon 0..315
  cmip/*.nc            one file per variable with CMIP names, lat DESCENDING, lon -180..135, the 3-D ones
                       (ua, va, ta, zg) on plev in Pa, pr in kg m-2 s-1 (f / 0.001... i.e. f * 1000), psl packed
                       as int16 with scale_factor/add_offset, NetCDF-3 64-bit offset for half the files; ZBOT as ZBOT
  split/a.nc, b.nc     all variables, time steps 0-1 in a.nc and 2 in b.nc (hours since 2000-01-01)
  bad_*/               malformed variants (see the C++ test)
"""
import os
import sys

import netCDF4
import numpy as np

CH = ["TMQ", "U850", "V850", "UBOT", "VBOT", "QREFHT", "PS", "PSL", "T200", "T500", "PRECT", "TS", "TREFHT",
      "Z1000", "Z200", "ZBOT"]
CMIP = {"TMQ": ("prw", None, 1.0), "U850": ("ua", 850, 1.0), "V850": ("va", 850, 1.0), "UBOT": ("uas", None, 1.0),
        "VBOT": ("vas", None, 1.0), "QREFHT": ("huss", None, 1.0), "PS": ("ps", None, 1.0),
        "PSL": ("psl", None, 1.0), "T200": ("ta", 200, 1.0), "T500": ("ta", 500, 1.0),
        "PRECT": ("pr", None, 1000.0), "TS": ("ts", None, 1.0), "TREFHT": ("tas", None, 1.0),
        "Z1000": ("zg", 1000, 1.0), "Z200": ("zg", 200, 1.0), "ZBOT": ("ZBOT", None, 1.0)}
H, W, T = 6, 8, 3
LAT = -90 + (np.arange(H) + 0.5) * 180 / H
LON360 = np.arange(W) * 360.0 / W
LON180 = LON360 - 180.0
LEVELS_PA = np.array([100000.0, 85000.0, 50000.0, 20000.0])


def f(c, t):
    y = np.arange(H)[:, None]
    x = np.arange(W)[None, :]
    return 1000.0 * c + 100.0 * t + y + 0.01 * x


def coords(ds, lat, lon, times, units="days since 2000-01-01 00:00:00", calendar="noleap", nt=None):
    ds.createDimension("time", None)
    ds.createDimension("lat", len(lat))
    ds.createDimension("lon", len(lon))
    tv = ds.createVariable("time", "f8", ("time",))
    tv.units = units
    tv.calendar = calendar
    tv[:] = times
    la = ds.createVariable("lat", "f8", ("lat",))
    la.units = "degrees_north"
    la[:] = lat
    lo = ds.createVariable("lon", "f8", ("lon",))
    lo.units = "degrees_east"
    lo[:] = lon


def write_all(path, steps=range(T), times=None, units="days since 2000-01-01 00:00:00", calendar="noleap",
              skip=(), lat=LAT, lon=LON360, transpose=None, fill_at=None, fmt="NETCDF4"):
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        coords(ds, lat, lon, times if times is not None else [0.125 * t for t in steps], units, calendar)
        for c, name in enumerate(CH):
            if name in skip:
                continue
            dims = ("time", "lon", "lat") if name == transpose else ("time", "lat", "lon")
            v = ds.createVariable(name, "f4", dims, fill_value=1e20)
            v.units = "1"
            for i, t in enumerate(steps):
                a = f(c, t)
                if lat[0] > lat[-1]:
                    a = a[::-1]
                if fill_at is not None and name == fill_at[0] and t == fill_at[1]:
                    a = a.copy()
                    a[fill_at[2], fill_at[3]] = 1e20
                v[i] = a.T if name == transpose else a


def write_cmip(d):
    os.makedirs(d, exist_ok=True)
    lat = LAT[::-1]
    done = set()
    for c, name in enumerate(CH):
        var, lev, scale = CMIP[name]
        fmt = "NETCDF3_64BIT_OFFSET" if c % 2 else "NETCDF4"
        path = os.path.join(d, var + ".nc")
        if lev is not None:
            # 3-D: all levels of this variable in one file; the channels that share it are written once.
            if var in done:
                continue
            done.add(var)
            with netCDF4.Dataset(path, "w", format=fmt) as ds:
                coords(ds, lat, LON180, [0.125 * t for t in range(T)])
                ds.createDimension("plev", len(LEVELS_PA))
                pv = ds.createVariable("plev", "f8", ("plev",))
                pv.units = "Pa"
                pv[:] = LEVELS_PA
                v = ds.createVariable(var, "f4", ("time", "plev", "lat", "lon"))
                data = np.full((T, len(LEVELS_PA), H, W), -1.0, dtype=np.float32)
                for cc, nn in enumerate(CH):
                    vv, ll, _ = CMIP[nn]
                    if vv != var:
                        continue
                    k = list(LEVELS_PA).index(ll * 100.0)
                    for t in range(T):
                        data[t, k] = f(cc, t)[::-1]
                v[:] = data
            continue
        with netCDF4.Dataset(path, "w", format=fmt) as ds:
            coords(ds, lat, LON180, [0.125 * t for t in range(T)])
            if var == "psl":  # packed: int16 with scale_factor and add_offset
                v = ds.createVariable(var, "i2", ("time", "lat", "lon"), fill_value=np.int16(-32767))
                v.scale_factor = 0.01
                v.add_offset = 1000.0 * c
                v.set_auto_maskandscale(False)
                for t in range(T):
                    v[t] = np.round((f(c, t)[::-1] - 1000.0 * c) / 0.01).astype(np.int16)
            else:
                v = ds.createVariable(var, "f4", ("time", "lat", "lon"))
                for t in range(T):
                    v[t] = f(c, t)[::-1] * scale


def main():
    d = sys.argv[1]
    for sub in ["all", "split", "bad_missing_var", "bad_grid", "bad_dims", "bad_times", "bad_fill", "bad_calendar",
                "bad_file", "bad_dup"]:
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    write_all(os.path.join(d, "all", "all.nc"))
    write_cmip(os.path.join(d, "cmip"))
    write_all(os.path.join(d, "split", "a.nc"), steps=[0, 1], times=[0, 3], units="hours since 2000-01-01")
    write_all(os.path.join(d, "split", "b.nc"), steps=[2], times=[6], units="hours since 2000-01-01",
              fmt="NETCDF3_CLASSIC")
    # Malformed variants.
    write_all(os.path.join(d, "bad_missing_var", "x.nc"), skip=("T500",))
    write_all(os.path.join(d, "bad_grid", "a.nc"), steps=[0, 1], skip=("TMQ",))
    with netCDF4.Dataset(os.path.join(d, "bad_grid", "b.nc"), "w") as ds:  # TMQ on a 6 x 9 grid
        coords(ds, LAT, np.arange(9) * 40.0, [0.0, 0.125])
        ds.createVariable("TMQ", "f4", ("time", "lat", "lon"))[:] = np.zeros((2, H, 9))
    write_all(os.path.join(d, "bad_dims", "x.nc"), transpose="PSL")
    write_all(os.path.join(d, "bad_times", "a.nc"), skip=("TMQ",))
    with netCDF4.Dataset(os.path.join(d, "bad_times", "b.nc"), "w") as ds:  # TMQ at other times
        coords(ds, LAT, LON360, [0.0, 0.25, 0.5])
        ds.createVariable("TMQ", "f4", ("time", "lat", "lon"))[:] = np.zeros((3, H, W))
    write_all(os.path.join(d, "bad_fill", "x.nc"), fill_at=("PRECT", 1, 2, 5))
    write_all(os.path.join(d, "bad_calendar", "a.nc"), steps=[0, 1])
    write_all(os.path.join(d, "bad_calendar", "b.nc"), steps=[2], times=[0.25], calendar="360_day")
    with open(os.path.join(d, "bad_file", "x.nc"), "wb") as fh:
        fh.write(b"CDF\x01 this is not really a NetCDF file")
    write_all(os.path.join(d, "bad_dup", "a.nc"), steps=[0, 1])
    write_all(os.path.join(d, "bad_dup", "b.nc"), steps=[1, 2])


if __name__ == "__main__":
    main()
