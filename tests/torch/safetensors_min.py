"""A minimal safetensors reader and writer (json + numpy + torch), for machines without the `safetensors` package.

    tensors, metadata = load("w.safetensors")           # {name: torch.Tensor}, {key: str}
    save("w.safetensors", model.state_dict(), {"format": "pt"})

Format (docs/checkpoint-format.md): 8-byte little-endian header length N, N bytes of JSON
{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian data;
offsets count from the end of the header. Checks are left to climseg's reader: this is the trusting side.
"""
import json

import numpy as np
import torch

# numpy has no bfloat16: BF16 travels as int16 and is reinterpreted by torch.
_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
       "I32": np.int32, "U8": np.uint8}
_TORCH = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        a = np.frombuffer(data, dtype=_NP[e["dtype"]], count=(end - begin) // np.dtype(_NP[e["dtype"]]).itemsize,
                          offset=8 + n + begin).reshape(e["shape"])
        t = torch.from_numpy(a.copy())
        tensors[name] = t.view(torch.bfloat16) if e["dtype"] == "BF16" else t
    return tensors, metadata


def save(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _TORCH[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
