"""Affine: y = x * scale[c] + shift[c]; scale and shift in climseg's (1,1,1,C) layout. attrs.alpha instead: the
parameter-free Scale layer, y = alpha * x."""


def run(x, p, attrs, state):
    if "alpha" in attrs:
        return x[0] * attrs["alpha"]
    c = x[0].shape[1]
    return x[0] * p[0].reshape(1, c, 1, 1) + p[1].reshape(1, c, 1, 1)
