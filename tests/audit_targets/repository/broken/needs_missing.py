from nowhere_pkg.layers import affine_forward  # no folder above this file holds nowhere_pkg


def twice_forward(x):
    return 2 * x, None


def twice_backward(dout, cache):
    return 2 * dout
