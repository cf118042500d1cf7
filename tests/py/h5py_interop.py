"""h5py/numpy side of tests/py/test_h5py_interop.cpp.

  h5py_interop.py write-sample OUT LAYOUT H W DATA_DTYPE LABEL_DTYPE SEED [gzip]
      OUT/sample.h5 in LAYOUT (deepcam: climate/data (H,W,16) + climate/labels_0 (H,W); 2018: climate/data (16,H,W)
      + climate/labels (H,W)) with random values, and what the reader must return: OUT/data.npy (H,W,16) float32
      (numpy's own conversion of the file's values) and OUT/labels.npy (H,W) in the file's label dtype.
  h5py_interop.py write-stats FILE MIN MAX
      a DeepCAM stats.h5: climate/minval = MIN and climate/maxval = MAX for all 16 channels (count, mean, sqmean too)
  h5py_interop.py dump-prediction FILE OUT
      OUT/logits.npy and OUT/mask.npy as h5py reads them, and OUT/info.json: each dataset's shape and dtype, each
      attribute of /prediction with its Python type.
"""
import json
import os
import sys

import h5py
import numpy as np


def write_sample(out, layout, h, w, data_dtype, label_dtype, seed, compression=None):
    rng = np.random.default_rng(seed)
    hwc = (rng.standard_normal((h, w, 16)) * 100.0).astype(data_dtype)
    labels = rng.integers(0, 3, size=(h, w)).astype(label_dtype)
    with h5py.File(os.path.join(out, "sample.h5"), "w") as f:
        kw = {"compression": compression, "chunks": True} if compression else {}
        if layout == "deepcam":
            f.create_dataset("climate/data", data=hwc, **kw)
            f.create_dataset("climate/labels_0", data=labels, **kw)
            f.create_dataset("climate/labels_1", data=labels[::-1].copy())  # relaxed labels: ignored by the reader
        else:
            f.create_dataset("climate/data", data=np.ascontiguousarray(hwc.transpose(2, 0, 1)), **kw)
            f.create_dataset("climate/labels", data=labels, **kw)
    np.save(os.path.join(out, "data.npy"), hwc.astype(np.float32))
    np.save(os.path.join(out, "labels.npy"), labels)


def dump_prediction(path, out):
    info = {"datasets": {}, "attrs": {}}
    with h5py.File(path, "r") as f:
        for name in ("prediction/logits", "prediction/mask"):
            d = f[name]
            info["datasets"][name] = {"shape": list(d.shape), "dtype": str(d.dtype)}
        np.save(os.path.join(out, "logits.npy"), f["prediction/logits"][...])
        np.save(os.path.join(out, "mask.npy"), f["prediction/mask"][...])
        for k, v in f["prediction"].attrs.items():
            if isinstance(v, np.ndarray):
                info["attrs"][k] = {"type": "array", "items": [x if isinstance(x, str) else repr(x) for x in v],
                                    "item_types": sorted({type(x).__name__ for x in v})}
            else:
                info["attrs"][k] = {"type": type(v).__name__, "value": v if isinstance(v, str) else repr(v)}
    with open(os.path.join(out, "info.json"), "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write-sample":
        a = sys.argv[2:]
        write_sample(a[0], a[1], int(a[2]), int(a[3]), a[4], a[5], int(a[6]), a[7] if len(a) > 7 else None)
    elif cmd == "write-stats":
        with h5py.File(sys.argv[2], "w") as f:
            lo, hi = float(sys.argv[3]), float(sys.argv[4])
            f.create_dataset("climate/minval", data=np.full(16, lo, np.float64))
            f.create_dataset("climate/maxval", data=np.full(16, hi, np.float64))
            f.create_dataset("climate/count", data=np.full(16, 1.0))
            f.create_dataset("climate/mean", data=np.full(16, 0.5 * (lo + hi)))
            f.create_dataset("climate/sqmean", data=np.full(16, 0.25 * (lo + hi) ** 2))
    elif cmd == "dump-prediction":
        dump_prediction(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
