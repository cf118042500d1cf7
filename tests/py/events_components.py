"""Oracle for tests/py/test_events_components.cpp: connected components of class masks with scipy.ndimage.

Usage: events_components.py DIR

DIR/cases.txt lists one case name a line; DIR/<name>.npy is its (H,W) uint8 class mask (any shape whose last two
axes are H and W). For each case and for both grids, periodic in longitude ("p") and not ("n"), this writes
  DIR/<name>_<p|n>_raw.npy     int32 (H,W): scipy's labels (per class, offset so classes never share a label),
                               merged across the longitude seam for "p"; numbering arbitrary, 0 background
  DIR/<name>_<p|n>_raster.npy  int32 (H,W): the same partition numbered 1, 2, ... in the raster order of each
                               component's first pixel (row 0 first, then by column)
Connectivity: 8 neighbours (scipy.ndimage.label with structure np.ones((3,3))); pixels join only within one class
value; for "p", (r, W-1) and (r', 0) with |r - r'| <= 1 and the same class are joined too (union-find); rows never wrap.
"""
import os
import sys

import numpy as np
import scipy.ndimage as ndi


def label(mask, periodic):
    h, w = mask.shape
    out = np.zeros((h, w), np.int64)
    n = 0
    for k in np.unique(mask):
        if k == 0:
            continue
        lab, cnt = ndi.label(mask == k, structure=np.ones((3, 3), dtype=int))
        sel = lab > 0
        out[sel] = lab[sel] + n
        n += cnt
    if periodic:
        parent = list(range(n + 1))

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for r in range(h):
            a = mask[r, w - 1]
            if a == 0:
                continue
            for rr in (r - 1, r, r + 1):
                if 0 <= rr < h and mask[rr, 0] == a:
                    x, y = find(int(out[r, w - 1])), find(int(out[rr, 0]))
                    if x != y:
                        parent[max(x, y)] = min(x, y)
        roots = np.array([find(i) for i in range(n + 1)], dtype=np.int64)
        out = roots[out]
    return out


def raster(lab):
    flat = lab.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    order = np.argsort(first, kind="stable")
    mapping = np.zeros(int(flat.max()) + 1 if flat.size else 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(1, len(ids) + 1)
    return mapping[lab]


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "cases.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    for name in names:
        m = np.load(os.path.join(d, name + ".npy"))
        m = m.reshape(m.shape[-2], m.shape[-1]).astype(np.uint8)
        for tag, periodic in (("p", True), ("n", False)):
            lab = label(m, periodic)
            np.save(os.path.join(d, "%s_%s_raw.npy" % (name, tag)), lab.astype(np.int32))
            np.save(os.path.join(d, "%s_%s_raster.npy" % (name, tag)), raster(lab).astype(np.int32))
    print("labelled %d masks" % len(names))


if __name__ == "__main__":
    main()
