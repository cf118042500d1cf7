#!/usr/bin/env python3
"""cudasim build step: copy a .cu file to a .cpp file that the host compiler can build against the shim.

    python3 rewrite_cu.py IN.cu OUT.cpp

Two rewrites, both keeping every line where it was (a #line directive names the original file, so compiler
messages, __FILE__/__LINE__ and std::source_location point into the .cu file):

1. Kernel launches:  name<T, U><<<grid, block[, shmem[, stream]]>>>(args)
   become            ::cudasim::launch((name<T, U>), "name<T, U>", grid, block[, shmem[, stream]])(args)
2. __launch_bounds__(N[, ...]) on a kernel definition: the body gets a first statement
   ::cudasim::check_launch_bounds(N[, ...]); so that a launch with more than N threads per block fails as on a GPU
   (the attribute itself expands to nothing, see include/cudasim/defs.h).

Comments, string and character literals are left alone. Launches inside macros or headers are not rewritten: our
code has none (a .cuh with a launch would fail to compile, loudly).
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def code_mask(src):
    """True at each index that is code (not inside a comment or a string/char literal)."""
    n = len(src)
    mask = [True] * n
    i = 0
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c == 'R' and src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == '_')):
            m = re.match(r'R"([^()\\ ]{0,16})\(', src[i:])
            if not m:
                i += 1
                continue
            end = src.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        elif c == '"' or (c == "'" and not (i > 0 and (src[i - 1].isalnum() or src[i - 1] == '_'))):
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j = min(n, j + 1)
            for k in range(i, j):
                mask[k] = False
            i = j
        else:
            i += 1
    return mask


def find_code(src, mask, token, start=0):
    i = src.find(token, start)
    while i >= 0 and not all(mask[i:i + len(token)]):
        i = src.find(token, i + 1)
    return i


def match_back_angle(src, mask, j):
    """src[j] == '>' closing a template argument list: return the index of its '<'."""
    depth, parens = 0, 0  # angle brackets count only outside parentheses: (3 > 2 ? 64 : 32) is an argument
    while j >= 0:
        if mask[j]:
            c = src[j]
            if c in ")]":
                parens += 1
            elif c in "([":
                parens -= 1
            elif parens == 0 and c == ">":
                depth += 1
            elif parens == 0 and c == "<":
                depth -= 1
                if depth == 0:
                    return j
        j -= 1
    raise ValueError("unbalanced template arguments before <<<")


def split_top(text):
    parts, depth, cur = [], 0, ""
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


def rewrite_launches(src, path):
    out = []
    pos = 0
    mask = code_mask(src)
    i = find_code(src, mask, "<<<")
    while i >= 0:
        # The kernel expression before <<<: [qualified] name [<template args>]
        j = i - 1
        while j >= 0 and src[j].isspace():
            j -= 1
        if src[j] == ">":
            j = match_back_angle(src, mask, j) - 1
            while j >= 0 and src[j].isspace():
                j -= 1
        k = j
        while k >= 0 and (src[k].isalnum() or src[k] in "_:"):
            k -= 1
        start = k + 1
        if start > j:
            raise ValueError(f"{path}:{src.count(chr(10), 0, i) + 1}: no kernel name before <<<")
        expr = src[start:i].strip()
        # The configuration up to the matching >>>
        depth, m = 0, i + 3
        while m < len(src):
            if mask[m]:
                c = src[m]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                elif depth == 0 and src.startswith(">>>", m):
                    break
            m += 1
        else:
            raise ValueError(f"{path}: unterminated <<<")
        config = [p.strip() for p in split_top(src[i + 3:m])]
        if not 2 <= len(config) <= 4:
            raise ValueError(f"{path}:{src.count(chr(10), 0, i) + 1}: <<<>>> takes 2 to 4 arguments")
        span = src[start:m + 3]
        name = " ".join(expr.split()).replace("\\", "\\\\").replace('"', '\\"')
        config = [" ".join(p.split()) for p in config]
        out.append(src[pos:start])
        out.append(f'::cudasim::launch(({expr}), "{name}", {", ".join(config)})' + "\n" * span.count("\n"))
        pos = m + 3
        i = find_code(src, mask, "<<<", pos)
    out.append(src[pos:])
    return "".join(out)


def rewrite_launch_bounds(src):
    mask = code_mask(src)
    inserts = []  # (index after '{', text)
    i = find_code(src, mask, "__launch_bounds__")
    while i >= 0:
        before_ok = i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")
        j = i + len("__launch_bounds__")
        while j < len(src) and src[j].isspace():
            j += 1
        if before_ok and j < len(src) and src[j] == "(":
            # arguments
            depth, k = 0, j
            while k < len(src):
                if mask[k]:
                    if src[k] == "(":
                        depth += 1
                    elif src[k] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                k += 1
            args = " ".join(src[j + 1:k].split())
            # the body: first '{' at parenthesis depth 0 (a ';' first means a declaration)
            depth, b = 0, k + 1
            while b < len(src):
                if mask[b]:
                    c = src[b]
                    if c == "(":
                        depth += 1
                    elif c == ")":
                        depth -= 1
                    elif depth == 0 and c in "{;":
                        break
                b += 1
            if b < len(src) and src[b] == "{":
                inserts.append((b + 1, f" ::cudasim::check_launch_bounds({args});"))
            i = find_code(src, mask, "__launch_bounds__", k)
        else:
            i = find_code(src, mask, "__launch_bounds__", i + 1)
    for at, text in reversed(inserts):
        src = src[:at] + text + src[at:]
    return src


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: rewrite_cu.py IN.cu OUT.cpp")
    path, out_path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        src = f.read()
    try:
        text = rewrite_launches(rewrite_launch_bounds(src), path)
    except ValueError as e:
        sys.exit(f"rewrite_cu.py: {e}")
    header = f'#line 1 "{path}"\n'
    try:
        with open(out_path, encoding="utf-8") as f:
            if f.read() == header + text:
                return  # unchanged: keep the timestamp
    except OSError:
        pass
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(header + text)


if __name__ == "__main__":
    main()
