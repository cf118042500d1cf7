#!/usr/bin/env python3
"""Oracle checks for `climseg events` outputs (tests/py/test_events_cli.cpp).

  events_check.py outputs OUT MASKS_GLOB [FIELDS_GLOB]
      Recomputes from the masks (and fields) with numpy/scipy/netCDF4, independently of climseg:
      - every object in event_ids.nc is exactly one 8-connected component of its class (scipy.ndimage.label, joined
        across the longitude seam, never across the poles);
      - objects.csv: pixels, area on the sphere (R = 6371 km, cell bounds at midpoints, +-90 at the ends), the
        centroid (area-weighted mean of unit vectors), latitude range, and with fields the intensities
        (max sqrt(UBOT^2+VBOT^2), min PSL, max PRECT in mm/h; max and mean TMQ, max TMQ*|(U850,V850)|);
      - events.csv: steps, first/last step, track = the objects' centroids, track length (haversine);
      - counts_per_step.csv and frequency.nc (tc/ar frequency = fraction of steps in a catalogued object).
      Prints "ok: N objects, M events".
  events_check.py same OUT1 OUT2
      The two output folders hold the same results (CSV bytes, event_id and frequency values).
"""
import csv
import glob
import math
import sys

import numpy as np
import netCDF4
import scipy.ndimage as ndi

R = 6371.0


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read_masks(pattern):
    steps = []
    for path in sorted(glob.glob(pattern)):
        with netCDF4.Dataset(path) as f:
            f.set_auto_mask(False)
            lat = np.array(f["lat"][:], dtype=np.float64)
            lon = np.array(f["lon"][:], dtype=np.float64)
            t = np.array(f["time"][:], dtype=np.float64)
            m = np.array(f["mask"][:], dtype=np.int64)
            if lat[0] > lat[-1]:
                lat = lat[::-1]
                m = m[:, ::-1, :]
            for k in range(len(t)):
                steps.append((t[k], m[k]))
    steps.sort(key=lambda s: s[0])
    return lat, lon, [s[1] for s in steps]


def read_fields(pattern, names):
    out = {}
    for path in sorted(glob.glob(pattern)):
        with netCDF4.Dataset(path) as f:
            f.set_auto_mask(False)
            t = np.array(f["time"][:], dtype=np.float64)
            for k in range(len(t)):
                out.setdefault(t[k], {})
                for n in names:
                    if n in f.variables:
                        out[t[k]][n] = np.array(f[n][k], dtype=np.float64)
    return [out[k] for k in sorted(out)]


def cell_area(lat, lon):
    e = np.empty(len(lat) + 1)
    e[1:-1] = 0.5 * (lat[1:] + lat[:-1])
    e[0] = lat[0] - 0.5 * (lat[1] - lat[0])
    e[-1] = lat[-1] + 0.5 * (lat[-1] - lat[-2])
    e = np.clip(e, -90, 90)
    row = R * R * (np.sin(np.radians(e[1:])) - np.sin(np.radians(e[:-1])))
    return row[:, None] * np.full(len(lon), 2 * np.pi / len(lon))[None, :]


def periodic_label(mask):
    lab, n = ndi.label(mask, structure=np.ones((3, 3), dtype=bool))
    parent = list(range(n + 1))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    H, W = lab.shape
    for r in range(H):
        for rr in (r - 1, r, r + 1):
            if 0 <= rr < H and lab[r, W - 1] and lab[rr, 0]:
                a, b = find(lab[r, W - 1]), find(lab[rr, 0])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(n + 1)])
    return roots[lab]


def haversine(la1, lo1, la2, lo2):
    p1, p2 = math.radians(la1), math.radians(la2)
    dp, dl = p2 - p1, math.radians(lo2 - lo1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R * math.asin(min(1.0, math.sqrt(a)))


def close(a, b, rel, what):
    if not (abs(a - b) <= rel * max(1.0, abs(a), abs(b))):
        fail(f"{what}: {a} vs {b}")


def outputs(out, masks_glob, fields_glob=None):
    lat, lon, masks = read_masks(masks_glob)
    T = len(masks)
    area = cell_area(lat, lon)
    clat, slat = np.cos(np.radians(lat))[:, None], np.sin(np.radians(lat))[:, None]
    clon, slon = np.cos(np.radians(lon))[None, :], np.sin(np.radians(lon))[None, :]
    ux, uy, uz = clat * clon, clat * slon, slat * np.ones_like(clon)
    with netCDF4.Dataset(out + "/event_ids.nc") as f:
        f.set_auto_mask(False)
        ids = np.array(f["event_id"][:], dtype=np.int64)
        if not np.allclose(f["lat"][:], lat) or not np.allclose(f["lon"][:], lon):
            fail("event_ids.nc coordinates differ from the masks'")
        tc_count = np.array(f["tc_count"][:])
    if ids.shape != (T,) + masks[0].shape:
        fail(f"event_ids shape {ids.shape}")
    fields = read_fields(fields_glob, ["UBOT", "VBOT", "PSL", "PRECT", "TMQ", "U850", "V850"]) if fields_glob else None
    rows = list(csv.DictReader(open(out + "/objects.csv")))
    by_key = {}
    for r in rows:
        by_key[(int(r["step"]), int(r["event_id"]))] = r
    n_obj = 0
    for t in range(T):
        m = masks[t]
        comp = {c: periodic_label(m == c) for c in (1, 2)}
        for e in np.unique(ids[t]):
            if e == 0:
                continue
            sel = ids[t] == e
            cls = int(m[sel][0])
            if not np.all(m[sel] == cls) or cls not in (1, 2):
                fail(f"step {t} event {e}: mixed classes")
            labs = np.unique(comp[cls][sel])
            if len(labs) != 1 or labs[0] == 0 or not np.array_equal(comp[cls] == labs[0], sel):
                fail(f"step {t} event {e}: not exactly one component")
            r = by_key.get((t, int(e)))
            if r is None:
                fail(f"step {t} event {e}: no row in objects.csv")
            n_obj += 1
            cname = "tropical_cyclone" if cls == 1 else "atmospheric_river"
            if r["class"] != cname:
                fail(f"step {t} event {e}: class {r['class']}")
            if int(r["pixels"]) != int(sel.sum()):
                fail(f"step {t} event {e}: pixels {r['pixels']} vs {sel.sum()}")
            a = float(area[sel].sum())
            close(float(r["area_km2"]), a, 1e-6, f"step {t} event {e} area")
            x, y, z = (float((area * u)[sel].sum()) for u in (ux, uy, uz))
            clat_deg = math.degrees(math.atan2(z, math.hypot(x, y)))
            clon_deg = math.degrees(math.atan2(y, x)) % 360.0
            if abs(float(r["centroid_lat_deg"]) - clat_deg) > 2e-4:
                fail(f"step {t} event {e}: centroid lat {r['centroid_lat_deg']} vs {clat_deg}")
            dl = abs(float(r["centroid_lon_deg"]) % 360.0 - clon_deg)
            if min(dl, 360 - dl) > 2e-4:
                fail(f"step {t} event {e}: centroid lon {r['centroid_lon_deg']} vs {clon_deg}")
            rows_in = np.nonzero(sel.any(axis=1))[0]
            close(float(r["lat_min_deg"]), lat[rows_in[0]], 1e-6, "lat_min")
            close(float(r["lat_max_deg"]), lat[rows_in[-1]], 1e-6, "lat_max")
            if fields is not None:
                fl = fields[t]
                if cls == 1:
                    w = np.sqrt(fl["UBOT"] ** 2 + fl["VBOT"] ** 2)
                    close(float(r["max_wind_m_s"]), float(w[sel].max()), 1e-5, "max_wind")
                    close(float(r["min_psl_Pa"]), float(fl["PSL"][sel].min()), 1e-5, "min_psl")
                    close(float(r["max_prect_mm_h"]), float(fl["PRECT"][sel].max()) * 3.6e6, 1e-5, "max_prect")
                else:
                    close(float(r["max_tmq_kg_m2"]), float(fl["TMQ"][sel].max()), 1e-5, "max_tmq")
                    close(float(r["mean_tmq_kg_m2"]), float((fl["TMQ"] * area)[sel].sum() / a), 1e-5, "mean_tmq")
                    ivt = fl["TMQ"] * np.sqrt(fl["U850"] ** 2 + fl["V850"] ** 2)
                    close(float(r["max_ivt_proxy_kg_m_s"]), float(ivt[sel].max()), 1e-5, "ivt")
        if tc_count[t] != len([e for e in np.unique(ids[t]) if e and m[ids[t] == e][0] == 1]):
            fail(f"step {t}: tc_count {tc_count[t]}")
    if n_obj != len(rows):
        fail(f"objects.csv has {len(rows)} rows, event_ids.nc {n_obj} objects")
    # Events against their objects.
    events = list(csv.DictReader(open(out + "/events.csv")))
    for ev in events:
        eid = int(ev["event_id"])
        objs = sorted((int(r["step"]), r) for r in rows if int(r["event_id"]) == eid)
        if len(objs) != int(ev["steps"]) or objs[0][0] != int(ev["first_step"]) or objs[-1][0] != int(ev["last_step"]):
            fail(f"event {eid}: steps disagree with objects.csv")
        track = [tuple(map(float, p.split())) for p in ev["track"].split(";")]
        length = 0.0
        for k, (_, r) in enumerate(objs):
            if abs(track[k][0] - float(r["centroid_lat_deg"])) > 1e-3 or abs(track[k][1] - float(r["centroid_lon_deg"])) > 1e-3:
                fail(f"event {eid}: track point {k}")
            if k:
                p = objs[k - 1][1]
                length += haversine(float(p["centroid_lat_deg"]), float(p["centroid_lon_deg"]),
                                    float(r["centroid_lat_deg"]), float(r["centroid_lon_deg"]))
        close(float(ev["track_length_km"]), length, 1e-3, f"event {eid} track length")
    ids_per_step = [set(np.unique(ids[t])) - {0} for t in range(T)]
    if sorted({int(r["event_id"]) for r in rows}) != sorted(int(e["event_id"]) for e in events):
        fail("events.csv and objects.csv name different events")
    # Counts and frequency.
    for r in csv.DictReader(open(out + "/counts_per_step.csv")):
        t = int(r["step"])
        n = int(r["tc_objects"]) + int(r["ar_objects"])
        if n != len(ids_per_step[t]):
            fail(f"counts_per_step step {t}")
    with netCDF4.Dataset(out + "/frequency.nc") as f:
        for name, cls in (("tc_frequency", 1), ("ar_frequency", 2)):
            want = np.mean([(ids[t] > 0) & (masks[t] == cls) for t in range(T)], axis=0)
            if not np.allclose(np.array(f[name][:]), want, atol=1e-6):
                fail(name)
    print(f"ok: {n_obj} objects, {len(events)} events")


def same(a, b):
    for name in ("objects.csv", "events.csv", "counts_per_step.csv", "counts_per_year.csv"):
        if open(a + "/" + name, "rb").read() != open(b + "/" + name, "rb").read():
            fail(name + " differs")
    for name, var in (("event_ids.nc", "event_id"), ("frequency.nc", "tc_frequency"), ("frequency.nc", "ar_frequency"),
                      ("frequency.nc", "tc_genesis_density")):
        with netCDF4.Dataset(a + "/" + name) as f, netCDF4.Dataset(b + "/" + name) as g:
            if not np.array_equal(np.array(f[var][:]), np.array(g[var][:])):
                fail(f"{name} {var} differs")
    print("ok")


def make_bad(kind, path):
    """Malformed mask files for the refusal tests."""
    H, W = 16, 24
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("time", None)
        f.createDimension("lat", H)
        f.createDimension("lon", W + (kind == "other-grid"))
        t = f.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01 00:00:00", "noleap"
        la = f.createVariable("lat", "f8", ("lat",))
        la.units = "degrees_north"
        la[:] = -90 + (np.arange(H) + 0.5) * 180 / H
        lo = f.createVariable("lon", "f8", ("lon",))
        lo.units = "degrees_east"
        n = W + (kind == "other-grid")
        lo[:] = np.arange(n) * 360.0 / n
        if kind == "bounds":
            # Bounds that are not the midpoints: row i spans [-90 + 180 i / H, -90 + 180 (i + 1) / H] squeezed
            # towards the equator by 0.9 (the cells' bounds and centres disagree on purpose).
            la.bounds = "lat_bnds"
            f.createDimension("nv", 2)
            b = f.createVariable("lat_bnds", "f8", ("lat", "nv"))
            e = 0.9 * (-90 + np.arange(H + 1) * 180.0 / H)
            b[:] = np.stack([e[:-1], e[1:]], axis=1)
        if kind == "two-dims":
            m = f.createVariable("mask", "i1", ("lat", "lon"))
            m[:] = 0
            return
        m = f.createVariable("mask", "i1", ("time", "lat", "lon"))
        t[:] = [0.0, 0.125] if kind != "later" else [0.25, 0.375]
        v = np.zeros((2, H, W + (kind == "other-grid")), dtype=np.int8)
        v[1, 3, 5] = 7 if kind == "bad-class" else 1
        m[:] = v


def main():
    mode = sys.argv[1]
    if mode == "make-bad":
        make_bad(sys.argv[2], sys.argv[3])
        return
    if mode == "outputs":
        outputs(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif mode == "same":
        same(sys.argv[2], sys.argv[3])
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
