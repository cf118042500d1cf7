"""Independent checks of a dataset written by `climseg data generate` (h5py and numpy as the oracle).

  synthetic_check.py layout DIR H W N_TRAIN N_VALID   every file: datasets, shapes, dtypes, label values, names
  synthetic_check.py stats DIR                        DIR/stats.h5 against numpy over DIR/train/*.h5
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


if __name__ == "__main__":
    if sys.argv[1] == "layout":
        check_layout(sys.argv[2], *map(int, sys.argv[3:7]))
    elif sys.argv[1] == "stats":
        check_stats(sys.argv[2])
    else:
        fail("unknown command " + sys.argv[1])
