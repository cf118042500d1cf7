#!/usr/bin/env python3
"""The reference for `climseg-bench events`: the same object finding and overlap tracking in numpy + scipy.

Per time step and class: scipy.ndimage.label with 8-connectivity (3x3 structure), labels joined across the
longitude seam (the grid is global), cell areas on the sphere (R = 6371 km, bounds at midpoints, +-90 at the ends),
objects below the class's minimum area dropped; then tracking between consecutive steps by overlap only, greedy by
overlap (larger first), the older event first, the object first in raster order, as climseg's rule without cyclone
distance links and gaps (the bench runs climseg that way for the comparison). Vectorised: label and bincount are C;
the per-object loops are over a handful of objects.

usage: events_reference.py MASKS.nc STEPS TC_MIN_AREA AR_MIN_AREA
prints one JSON line: seconds for reading, objects and tracking, per-step object counts and areas, event count.
"""
import json
import sys
import time

import numpy as np
import netCDF4
import scipy.ndimage as ndi

R = 6371.0


def cell_areas(lat, lon):
    e = np.empty(len(lat) + 1)
    e[1:-1] = 0.5 * (lat[1:] + lat[:-1])
    e[0] = lat[0] - 0.5 * (lat[1] - lat[0])
    e[-1] = lat[-1] + 0.5 * (lat[-1] - lat[-2])
    e = np.clip(e, -90, 90)
    row = R * R * (np.sin(np.radians(e[1:])) - np.sin(np.radians(e[:-1])))
    return row[:, None] * np.full(len(lon), 2 * np.pi / len(lon))[None, :]


def components(mask, cls):
    lab, n = ndi.label(mask == cls, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return lab, 0
    parent = np.arange(n + 1)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    H, W = lab.shape
    a, b = lab[:, 0], lab[:, W - 1]
    pairs = [(a, b)]
    if H > 1:
        pairs += [(a[1:], b[:-1]), (a[:-1], b[1:])]
    for x, y in pairs:
        sel = (x > 0) & (y > 0)
        for p, q in set(zip(x[sel].tolist(), y[sel].tolist())):
            rp, rq = find(p), find(q)
            if rp != rq:
                parent[max(rp, rq)] = min(rp, rq)
    roots = np.array([find(i) for i in range(n + 1)])
    lab = roots[lab]
    # Renumber 1..m by first pixel in raster order.
    flat = lab.ravel()
    nz = np.flatnonzero(flat)
    _, first = np.unique(flat[nz], return_index=True)
    order = np.argsort(first)
    uniq = np.unique(flat[nz])
    remap = np.zeros(roots.max() + 1, dtype=np.int64)
    remap[uniq[order]] = np.arange(1, len(uniq) + 1)
    return remap[lab], len(uniq)


def main():
    path, steps = sys.argv[1], int(sys.argv[2])
    min_area = {1: float(sys.argv[3]), 2: float(sys.argv[4])}
    t0 = time.perf_counter()
    with netCDF4.Dataset(path) as f:
        lat = np.asarray(f.variables["lat"][:], dtype=np.float64)
        lon = np.asarray(f.variables["lon"][:], dtype=np.float64)
        masks = np.asarray(f.variables["mask"][:steps], dtype=np.uint8)
    t_read = time.perf_counter() - t0
    area = cell_areas(lat, lon).ravel()
    t0 = time.perf_counter()
    per_step = []  # per step: list of (cls, label image, kept labels, areas)
    counts, areas = [], []
    for t in range(masks.shape[0]):
        objs = []
        n_kept, a_sum = 0, 0.0
        for cls in (1, 2):
            lab, n = components(masks[t], cls)
            if n == 0:
                objs.append((cls, lab, np.zeros(0, dtype=np.int64)))
                continue
            a = np.bincount(lab.ravel(), weights=area, minlength=n + 1)
            keep = np.flatnonzero(a >= min_area[cls])
            keep = keep[keep > 0]
            n_kept += len(keep)
            a_sum += float(a[keep].sum())
            objs.append((cls, lab, keep))
        per_step.append(objs)
        counts.append(n_kept)
        areas.append(a_sum)
    t_objects = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = 0
    prev = None  # per class: dict label -> event
    for t, objs in enumerate(per_step):
        cur = {}
        for cls, lab, keep in objs:
            ev_of = {}
            if prev is not None and len(keep):
                plab, pev = prev[cls]
                kp = np.fromiter(pev.keys(), dtype=np.int64) if pev else np.zeros(0, dtype=np.int64)
                both = np.isin(plab, kp) & np.isin(lab, keep)
                pairs = plab[both].astype(np.int64) * (lab.max() + 1) + lab[both]
                u, c = np.unique(pairs, return_counts=True)
                cand = sorted(((-int(cnt), pev[int(p // (lab.max() + 1))], int(p % (lab.max() + 1)))
                               for p, cnt in zip(u, c)))
                used_ev, used_obj = set(), set()
                for _, e, o in cand:
                    if e in used_ev or o in used_obj:
                        continue
                    used_ev.add(e)
                    used_obj.add(o)
                    ev_of[o] = e
            for o in keep.tolist():
                if o not in ev_of:
                    events += 1
                    ev_of[o] = (t, cls, o)  # creation order: step, then raster order within the step
            cur[cls] = (lab, ev_of)
        prev = cur
    t_track = time.perf_counter() - t0
    print(json.dumps({"steps": int(masks.shape[0]), "read_s": t_read, "objects_s": t_objects, "tracking_s": t_track,
                      "objects": counts, "areas": areas, "events": events}))


if __name__ == "__main__":
    main()
