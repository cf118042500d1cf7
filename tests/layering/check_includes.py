#!/usr/bin/env python3
"""No file includes upward (docs/architecture.md section 1): every `#include "dir/..."` in the tree must name a
directory its own directory may use.

    apps, bench -> analysis -> io -> ... ; apps, bench -> train -> models -> layers -> kernels -> engine
    io and comm sit beside layers (they may use kernels and engine); analysis sits above io.

usage: check_includes.py SOURCE_DIR        exit 1 listing every upward include, else prints a summary
"""
import os
import re
import sys

# What each top-level directory may include (besides itself). `cudasim/` is the CUDA emulator's own header folder
# (kernels/cudasim/include), below everything: the emulated build force-includes it anyway.
ALLOWED = {
    "engine": {"cudasim"},
    "kernels": {"engine", "cudasim"},
    "layers": {"engine", "kernels"},
    "models": {"engine", "kernels", "layers"},
    "train": {"engine", "kernels", "layers", "models", "io", "comm"},
    "io": {"engine", "kernels"},
    "comm": {"engine", "kernels"},
    "analysis": {"engine", "io"},
    "apps": {"engine", "kernels", "layers", "models", "train", "io", "comm", "analysis"},
    "bench": {"engine", "kernels", "layers", "models", "train", "io", "comm", "analysis", "tests"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z0-9_]+)/')
SUFFIXES = (".h", ".hpp", ".cpp", ".cu", ".cuh")


def main():
    root = sys.argv[1]
    bad, checked = [], 0
    for top, allowed in sorted(ALLOWED.items()):
        for d, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.join(d, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        checked += 1
                        target = m.group(1)
                        if target != top and target not in allowed and target in ALLOWED:
                            bad.append(f"{rel}:{n}: {top}/ includes {line.strip()[len('#include '):]} ({target}/ is above {top}/)")
    if bad:
        print("upward includes (docs/architecture.md: apps, bench -> train -> models -> layers -> kernels -> engine; "
              "io and comm beside; analysis above io):")
        print("\n".join("  " + b for b in bad))
        sys.exit(1)
    print(f"ok: {checked} project includes in {', '.join(sorted(ALLOWED))}, none upward")


if __name__ == "__main__":
    main()
