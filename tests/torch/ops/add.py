def run(x, p, attrs, state):
    return x[0] + x[1]
