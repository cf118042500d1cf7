"""Independent checks of a dataset written by `climseg data generate` (h5py and numpy as the oracle).

  synthetic_check.py layout DIR H W N_TRAIN N_VALID   every file: datasets, shapes, dtypes, label values, names
  synthetic_check.py stats DIR                        DIR/stats.h5 against numpy over DIR/train/*.h5
  synthetic_check.py netcdf DIR H W N PER_FILE START REF
                                                      `data generate --format netcdf` output read with netCDF4,
                                                      xarray (cftime) and ncdump: names, coordinates, noleap times,
                                                      attributes, mask flags, stats.h5, and the values against
                                                      REF/data_K.npy and REF/labels_K.npy (the generator in-process)
  synthetic_check.py sequence DIR N                   `data generate --format netcdf --sequence`: truth.csv and
                                                      truth_events.csv (headers, formats, order, steps in 0..N-1,
                                                      times equal to the history files' time values, one row per
                                                      step of each event) and the masks under the catalogued events
Prints one line per check and exits non-zero (with the reason) on the first failure.
"""
import glob
import os
import re
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_layout(d, h, w, n_train, n_valid):
    for split, n in (("train", n_train), ("validation", n_valid)):
        files = sorted(glob.glob(os.path.join(d, split, "*.h5")))
        if len(files) != n:
            fail(f"{split}: {len(files)} files, expected {n}")
        for f in files:
            if not re.fullmatch(r"data-\d{4}-\d{2}-\d{2}-0[0-7]-\d+\.h5", os.path.basename(f)):
                fail(f"{f}: name is not data-YYYY-MM-DD-HH-R.h5 with HH in 00..07")
            with h5py.File(f, "r") as h5:
                names = []
                h5.visit(names.append)
                if sorted(names) != ["climate", "climate/data", "climate/labels_0"]:
                    fail(f"{f}: objects {names}")
                data, lab = h5["climate/data"], h5["climate/labels_0"]
                if data.shape != (h, w, 16) or data.dtype != np.dtype("<f4"):
                    fail(f"{f}: climate/data {data.shape} {data.dtype}")
                if lab.shape != (h, w) or lab.dtype != np.dtype("u1"):
                    fail(f"{f}: climate/labels_0 {lab.shape} {lab.dtype}")
                if data.compression is not None or data.chunks is not None:
                    fail(f"{f}: climate/data is chunked or compressed by default")
                x, l = data[...], lab[...]
                if not np.isfinite(x).all():
                    fail(f"{f}: non-finite data")
                if not set(np.unique(l)).issubset({0, 1, 2}):
                    fail(f"{f}: label values {np.unique(l)}")
                for a in ("generator", "seed", "sample_index"):
                    if a not in h5.attrs:
                        fail(f"{f}: root attribute {a} missing")
        print(f"{split}: {len(files)} files OK")


def check_stats(d):
    files = sorted(glob.glob(os.path.join(d, "train", "*.h5")))
    n, s1, s2 = 0, np.zeros(16), np.zeros(16)
    lo, hi = np.full(16, np.inf), np.full(16, -np.inf)
    for f in files:
        with h5py.File(f, "r") as h5:
            x = h5["climate/data"][...].astype(np.float64).reshape(-1, 16)
        n += x.shape[0]
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
    with h5py.File(os.path.join(d, "stats.h5"), "r") as h5:
        st = {k: h5["climate"][k][...] for k in ("count", "mean", "sqmean", "minval", "maxval")}
    for k, v in st.items():
        if v.shape != (16,) or v.dtype != np.float64:
            fail(f"stats.h5 climate/{k}: {v.shape} {v.dtype}")
    if not (st["count"] == n).all():
        fail(f"count {st['count']} != {n}")
    for k, ref in (("mean", s1 / n), ("sqmean", s2 / n)):
        err = np.abs(st[k] - ref) / np.maximum(np.abs(ref), 1e-30)
        if err.max() > 1e-11:
            fail(f"{k}: relative error {err.max()} (channel {err.argmax()})")
    if not (st["minval"] == lo).all() or not (st["maxval"] == hi).all():
        fail("minval/maxval differ from numpy's")
    print(f"stats.h5 OK over {len(files)} training files ({n} pixels)")


# CAM's names, units and long names of the 16 channels (DeepCAM order), written out here independently.
CAM_FIELDS = [
    ("TMQ", "kg/m2", "Total (vertically integrated) precipitable water"),
    ("U850", "m/s", "Zonal wind at 850 mbar pressure surface"),
    ("V850", "m/s", "Meridional wind at 850 mbar pressure surface"),
    ("UBOT", "m/s", "Lowest model level zonal wind"),
    ("VBOT", "m/s", "Lowest model level meridional wind"),
    ("QREFHT", "kg/kg", "Reference height humidity"),
    ("PS", "Pa", "Surface pressure"),
    ("PSL", "Pa", "Sea level pressure"),
    ("T200", "K", "Temperature at 200 mbar pressure surface"),
    ("T500", "K", "Temperature at 500 mbar pressure surface"),
    ("PRECT", "m/s", "Total (convective and large-scale) precipitation rate (liq + ice)"),
    ("TS", "K", "Surface temperature (radiative)"),
    ("TREFHT", "K", "Reference height temperature"),
    ("Z1000", "m", "Geopotential Z at 1000 mbar pressure surface"),
    ("Z200", "m", "Geopotential Z at 200 mbar pressure surface"),
    ("ZBOT", "m", "Lowest model level height"),
]


def check_coords(f, ds, h, w):
    if ds.data_model != "NETCDF4":
        fail(f"{f}: data model {ds.data_model}, expected NETCDF4")
    if not ds.dimensions["time"].isunlimited():
        fail(f"{f}: time is not the unlimited dimension")
    if len(ds.dimensions["lat"]) != h or len(ds.dimensions["lon"]) != w:
        fail(f"{f}: lat/lon sizes {len(ds.dimensions['lat'])}/{len(ds.dimensions['lon'])}, expected {h}/{w}")
    lat, lon = ds["lat"][:].data, ds["lon"][:].data
    want_lat = -90 + (np.arange(h) + 0.5) * 180 / h
    want_lon = np.arange(w) * 360 / w
    if not (np.diff(lat) > 0).all() or not -90 < lat[0] < -90 + 180 / h:
        fail(f"{f}: lat must ascend from the southernmost row, got {lat[:3]} .. {lat[-1]}")
    if np.abs(lat - want_lat).max() > 1e-12 or np.abs(lon - want_lon).max() > 1e-12:
        fail(f"{f}: lat/lon are not the cell centres -90 + (i + 0.5) 180/H, j 360/W")
    for v, units in (("lat", "degrees_north"), ("lon", "degrees_east"), ("time", "days since 2000-01-01 00:00:00")):
        if ds[v].units != units:
            fail(f"{f}: {v}:units {ds[v].units!r}, expected {units!r}")
    if ds["time"].calendar != "noleap":
        fail(f"{f}: time:calendar {ds['time'].calendar!r}")
    for a, want in (("Conventions", "CF-1.8"), ("source", "climseg data generate --format netcdf (synthetic)")):
        if getattr(ds, a, None) != want:
            fail(f"{f}: global {a} {getattr(ds, a, None)!r}, expected {want!r}")
    for a in ("title", "seed"):
        if a not in ds.ncattrs():
            fail(f"{f}: global attribute {a} missing")
    return ds["time"][:].data


def check_netcdf(d, h, w, n, per_file, start, ref):
    import subprocess

    import cftime
    import netCDF4
    import xarray as xr

    y, m, day = map(int, start.split("-"))
    t0 = cftime.DatetimeNoLeap(y, m, day)
    step = cftime.DatetimeNoLeap(2000, 1, 1, 3) - cftime.DatetimeNoLeap(2000, 1, 1)
    starts = [t0 + step * k for k in range(0, n, per_file)]
    names = [f"synthetic.cam.h2.{t.year:04d}-{t.month:02d}-{t.day:02d}-{t.hour * 3600:05d}.nc" for t in starts]
    got = sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, "*.nc")))
    if got != sorted(names):
        fail(f"files {got}, expected {names}")
    labels = sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, "labels", "*.nc")))
    if labels != sorted(x.replace(".cam.h2.", ".labels.") for x in names):
        fail(f"label files {labels}")
    print(f"{len(names)} history files and {len(labels)} label files, named by their first step")

    times, k = [], 0
    n1, s1, s2 = 0, np.zeros(16), np.zeros(16)
    lo, hi = np.full(16, np.inf), np.full(16, -np.inf)
    for name in names:
        f = os.path.join(d, name)
        fl = os.path.join(d, "labels", name.replace(".cam.h2.", ".labels."))
        with netCDF4.Dataset(f) as ds, netCDF4.Dataset(fl) as dl:
            tv = check_coords(f, ds, h, w)
            if not np.array_equal(check_coords(fl, dl, h, w), tv):
                fail(f"{fl}: time values differ from {f}")
            nt = len(tv)
            want_nt = min(per_file, n - k)
            if nt != want_nt:
                fail(f"{f}: {nt} steps, expected {want_nt}")
            if not np.array_equal(np.diff(tv), np.full(nt - 1, 0.125)):
                fail(f"{f}: time values {tv} are not 0.125 days apart")
            fields = [v for v in ds.variables if v not in ("time", "lat", "lon")]
            if fields != [c[0] for c in CAM_FIELDS]:
                fail(f"{f}: variables {fields}")
            for name_, units, long_name in CAM_FIELDS:
                v = ds[name_]
                if v.dimensions != ("time", "lat", "lon") or v.dtype != np.float32:
                    fail(f"{f}: {name_} {v.dimensions} {v.dtype}")
                if v.units != units or v.long_name != long_name:
                    fail(f"{f}: {name_} units {v.units!r} long_name {v.long_name!r}")
            mask = dl["mask"]
            if mask.dimensions != ("time", "lat", "lon") or mask.dtype != np.int8:
                fail(f"{fl}: mask {mask.dimensions} {mask.dtype}")
            fv = mask.getncattr("flag_values")
            if fv.dtype != np.int8 or list(fv) != [0, 1, 2]:
                fail(f"{fl}: flag_values {fv!r}")
            if mask.flag_meanings != "background tropical_cyclone atmospheric_river":
                fail(f"{fl}: flag_meanings {mask.flag_meanings!r}")
            if mask.long_name != "class of each cell":
                fail(f"{fl}: mask long_name {mask.long_name!r}")
            ds.set_auto_mask(False)
            dl.set_auto_mask(False)
            x = np.stack([ds[c[0]][:] for c in CAM_FIELDS], axis=-1)  # (time, lat, lon, 16)
            lab = dl["mask"][:]
            for t in range(nt):
                want = np.load(os.path.join(ref, f"data_{k + t}.npy")).reshape(h, w, 16)
                want_l = np.load(os.path.join(ref, f"labels_{k + t}.npy")).reshape(h, w)
                if not np.array_equal(x[t].view(np.uint32), want.view(np.uint32)):
                    bad = np.argwhere(x[t] != want)[0]
                    fail(f"{f}: step {t} differs from the generator at (row, col, channel) {tuple(bad)}")
                if not np.array_equal(lab[t].astype(np.uint8), want_l):
                    fail(f"{fl}: step {t} mask differs from the generator's labels")
            # South at row 0: the Antarctic plateau lowers the surface pressure along the first row.
            ps, psl = ds["PS"][:], ds["PSL"][:]
            if not (ps[:, 0, :] < 0.8 * psl[:, 0, :]).all() or (ps[:, -1, :] < 0.8 * psl[:, -1, :]).all():
                fail(f"{f}: row 0 is not the Antarctic plateau (PS vs PSL)")
            xs = x.astype(np.float64).reshape(-1, 16)
            n1 += xs.shape[0]
            s1 += xs.sum(0)
            s2 += (xs * xs).sum(0)
            lo, hi = np.minimum(lo, xs.min(0)), np.maximum(hi, xs.max(0))
            k += nt
        with xr.open_dataset(f, use_cftime=True) as xd:
            ft = list(xd["time"].values)
            if ft[0] != starts[names.index(name)]:
                fail(f"{f}: first time {ft[0]}, expected {starts[names.index(name)]} (the file name)")
            times += ft
        with xr.open_dataset(fl, use_cftime=True) as xl:
            if list(xl["time"].values) != ft:
                fail(f"{fl}: times differ from {f}")
            xlat = xl["lat"].values
            if not (np.diff(xlat) > 0).all() or not -90 < xlat[0] < -90 + 180 / h:
                fail(f"{fl}: xarray reads lat {xlat[:2]} .., not ascending from the south")
        r = subprocess.run(["ncdump", "-h", f], capture_output=True, text=True)
        rl = subprocess.run(["ncdump", "-h", fl], capture_output=True, text=True)
        if r.returncode or rl.returncode or "UNLIMITED" not in r.stdout or "mask:flag_values" not in rl.stdout:
            fail(f"ncdump -h {f} / {fl}: {r.returncode} {rl.returncode} {r.stderr} {rl.stderr}")
    if k != n:
        fail(f"{k} steps in all, expected {n}")
    if not all(isinstance(t, cftime.DatetimeNoLeap) for t in times):
        fail(f"times decode as {type(times[0])}, expected cftime.DatetimeNoLeap")
    if times[0] != t0 or any(b - a != step for a, b in zip(times, times[1:])):
        fail(f"times {times} are not 3-hourly from {t0}")
    if any(t.month == 2 and t.day == 29 for t in times):
        fail("a Feb 29 in a noleap calendar")
    print(f"{n} steps, 3-hourly noleap from {times[0]} to {times[-1]}; lat ascending; units, flags, values OK")
    print("ncdump -h reads every file")

    with h5py.File(os.path.join(d, "stats.h5"), "r") as h5:
        st = {k_: h5["climate"][k_][...] for k_ in ("count", "mean", "sqmean", "minval", "maxval")}
    if not (st["count"] == n1).all():
        fail(f"stats.h5 count {st['count']} != {n1}")
    for k_, want in (("mean", s1 / n1), ("sqmean", s2 / n1)):
        err = np.abs(st[k_] - want) / np.maximum(np.abs(want), 1e-30)
        if err.max() > 1e-11:
            fail(f"stats.h5 {k_}: relative error {err.max()} (channel {err.argmax()})")
    if not (st["minval"] == lo).all() or not (st["maxval"] == hi).all():
        fail("stats.h5 minval/maxval differ from numpy's over the history files")
    print(f"stats.h5 OK over all {n} steps")


def check_sequence(d, n):
    import csv

    import cftime
    import netCDF4

    # The files' time axis, in order: step k of the run is the k-th time value over the files sorted by name.
    times, masks, lat, lon = [], [], None, None
    for f in sorted(glob.glob(os.path.join(d, "synthetic.cam.h2.*.nc"))):
        fl = os.path.join(d, "labels", os.path.basename(f).replace(".cam.h2.", ".labels."))
        with netCDF4.Dataset(f) as ds, netCDF4.Dataset(fl) as dl:
            tv = ds["time"][:].data
            times += list(cftime.num2date(tv, ds["time"].units, calendar=ds["time"].calendar))
            dl.set_auto_mask(False)
            masks.append(dl["mask"][:])
            lat, lon = ds["lat"][:].data, ds["lon"][:].data
    if len(times) != n:
        fail(f"{len(times)} time steps in the files, expected {n}")
    iso = [t.strftime("%Y-%m-%dT%H:%M:%S") for t in times]
    mask = np.concatenate(masks)

    header = "event_id,class,step,time,lat_deg,lon_deg,strength,path"
    with open(os.path.join(d, "truth.csv"), newline="") as fh:
        text = fh.read()
    lines = text.split("\n")
    if lines[0] != header or lines[-1] != "":
        fail(f"truth.csv header {lines[0]!r} (expected {header!r}) or no final newline")
    rows = list(csv.reader(lines[1:-1]))
    if not rows:
        fail("truth.csv has no rows")
    num4 = re.compile(r"-?\d+\.\d{4}")
    num3 = re.compile(r"-?\d+\.\d{3}")
    seen, prev = {}, None
    hits = {"tropical_cyclone": [0, 0], "atmospheric_river": [0, 0]}
    for r in rows:
        if len(r) != 8:
            fail(f"truth.csv row {r}: {len(r)} fields")
        eid, cls, step = int(r[0]), r[1], int(r[2])
        if cls not in hits:
            fail(f"truth.csv row {r}: class {cls!r}")
        if not 0 <= step < n:
            fail(f"truth.csv row {r}: step {step} outside 0..{n - 1}")
        if r[3] != iso[step]:
            fail(f"truth.csv row {r}: time {r[3]} but the files' step {step} is {iso[step]}")
        if not (num4.fullmatch(r[4]) and num4.fullmatch(r[5]) and num3.fullmatch(r[6])):
            fail(f"truth.csv row {r}: lat/lon not %.4f or strength not %.3f")
        la, lo, strength = float(r[4]), float(r[5]), float(r[6])
        if not (-90 <= la <= 90 and 0 <= lo < 360 and strength > 0):
            fail(f"truth.csv row {r}: lat {la} lon {lo} strength {strength}")
        if prev is not None and (eid, step) <= prev:
            fail(f"truth.csv not sorted by event_id then step at {r}")
        if prev is not None and eid == prev[0] and step != prev[1] + 1:
            fail(f"truth.csv event {eid}: step {step} after {prev[1]} (a gap)")
        if prev is not None and eid not in (prev[0], prev[0] + 1):
            fail(f"truth.csv event ids jump from {prev[0]} to {eid}")
        if prev is None and eid != 1:
            fail(f"truth.csv event ids start at {eid}, expected 1")
        prev = (eid, step)
        if cls == "tropical_cyclone":
            if r[7] != "" or not 8 <= abs(la) <= 35:
                fail(f"truth.csv cyclone row {r}: path must be empty, |lat| within 8..35")
            pts = [(la, lo)]
        else:
            pts = [tuple(map(float, p.split(" "))) for p in r[7].split(";")]
            if len(pts) != 9 or not all(num3.fullmatch(x) for p in r[7].split(";") for x in p.split(" ")):
                fail(f"truth.csv river row {r}: path is not 9 points 'lat lon' (%.3f) joined by ';'")
            if abs(pts[4][0] - la) > 1e-3 or abs((pts[4][1] - lo + 180) % 360 - 180) > 1e-3:
                fail(f"truth.csv river row {r}: lat/lon is not the path's midpoint")
            pts = pts[2:7]
        first = seen.setdefault(eid, [cls, step, step, 0])
        if first[0] != cls:
            fail(f"truth.csv event {eid} changes class")
        first[2] = step
        first[3] += 1
        # The mask under the event: class label within one cell of the point (cyclone centre, river middle points).
        want = 1 if cls == "tropical_cyclone" else 2
        for pla, plo in pts:
            i = int(np.argmin(np.abs(lat - pla)))
            j = int(np.argmin(np.abs((lon - plo + 180) % 360 - 180)))
            win = mask[step, max(0, i - 1) : i + 2][:, [(j - 1) % len(lon), j, (j + 1) % len(lon)]]
            hits[cls][0] += 1
            hits[cls][1] += int((win == want).any())
    for cls, (total, hit) in hits.items():
        if total and hit < 0.9 * total:
            fail(f"{cls}: only {hit} of {total} catalogued points have the class in the mask within one cell")
    print(f"truth.csv: {len(rows)} rows, {len(seen)} events, times match the files; mask under the points: "
          + ", ".join(f"{c} {h}/{t}" for c, (t, h) in hits.items()))

    eh = "event_id,class,first_step,last_step,first_time,last_time,steps"
    with open(os.path.join(d, "truth_events.csv"), newline="") as fh:
        elines = fh.read().split("\n")
    if elines[0] != eh or elines[-1] != "":
        fail(f"truth_events.csv header {elines[0]!r} (expected {eh!r}) or no final newline")
    erows = list(csv.reader(elines[1:-1]))
    if [int(r[0]) for r in erows] != sorted(seen):
        fail(f"truth_events.csv ids {[r[0] for r in erows]} differ from truth.csv's")
    for r in erows:
        cls, f0, f1, cnt = seen[int(r[0])]
        want = [r[0], cls, str(f0), str(f1), iso[f0], iso[f1], str(cnt)]
        if r != want or f1 - f0 + 1 != cnt:
            fail(f"truth_events.csv row {r}, expected {want} from truth.csv")
    if [seen[e][1] for e in sorted(seen)] != sorted(seen[e][1] for e in seen):
        fail("event ids are not in order of first step")
    print(f"truth_events.csv: {len(erows)} events consistent with truth.csv")


if __name__ == "__main__":
    if sys.argv[1] == "layout":
        check_layout(sys.argv[2], *map(int, sys.argv[3:7]))
    elif sys.argv[1] == "stats":
        check_stats(sys.argv[2])
    elif sys.argv[1] == "netcdf":
        check_netcdf(sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7], sys.argv[8])
    elif sys.argv[1] == "sequence":
        check_sequence(sys.argv[2], int(sys.argv[3]))
    else:
        fail("unknown command " + sys.argv[1])
