"""The course-assignment conventions gradlab knows without being told: one table, read top to bottom.

A forward `name_forward(x, *arrays, [hyperparameter dict])` returns (out, cache) and its twin
`name_backward(dout, cache)` returns dx, or a tuple of gradients in the order of the forward's
array arguments. A loss `name_loss(x, y)` returns (loss, dx) with integer labels y in [0, C).
A linear classifier's loss `name(W, X, y, reg)` (linear_svm.py, softmax.py) returns (loss, dW):
W is differentiated, X is data and y labels (both drawn, never differentiated), reg a float.
A plain function `f(x)` has a twin `f_grad(x)` (the elementwise derivative) or
`f_backward(dout, x)` (the vector-Jacobian product). A forward may return several arrays before
its cache (lstm_step_forward -> next_h, next_c, cache): its backward then takes one upstream
gradient per output, in order, before the cache (the backward's own signature says how many).

What gradlab draws follows from the names alone:
  HYPERPARAMETERS  a known dict argument -> the op's family and the values searched for its keys
  LAYOUTS          family -> the shape of each array argument, in named dimensions
  CONSTANTS        family -> its arguments that are not differentiated (labels, indices, masks)
  DIMENSIONS       a dimension -> the sizes it is drawn from (shrinks towards the smallest)
Hyperparameter values shrink towards the first value listed, so a failure is shown at the
simplest setting that still breaks the backward (pad 0, stride 1, window 1 x 1, ...).
"""

from __future__ import annotations

import re

# --- twins: how a forward's backward, and a plain function's derivative, are named ---------------

FORWARD_WORD, BACKWARD_WORD = "forward", "backward"
PLAIN_TWINS = ("{name}_backward", "{name}_grad", "{name}_derivative", "{name}_prime")
LOSS_SUFFIX = "_loss"  # softmax_loss(x, y) -> (loss, dx)
LABEL_NAMES = ("y",)  # integer class labels of a loss, in [0, C)
LOSS_FAMILIES = ("loss", "temporal_loss", "classifier")  # a `_loss` of these returns (loss, dx)
# families whose arguments alone say the function is a loss, whatever its name (svm_loss_naive, softmax_loss_vectorized)
LOSS_BY_ARGUMENTS = ("classifier",)

# --- the well-known hyperparameter dicts -------------------------------------------------------
# name -> (family, {key: values searched}); every combination of the listed values is valid
# except where VALID below says otherwise.

HYPERPARAMETERS: dict[str, tuple[str, dict[str, tuple]]] = {
    "conv_param": ("conv", {"pad": (0, 1, 2), "stride": (1, 2)}),
    "pool_param": ("pool", {"pool_height": (1, 2, 3), "pool_width": (1, 2, 3), "stride": (1, 2, 3)}),
    "bn_param": ("norm", {"mode": ("train", "test"), "eps": (1e-5,), "momentum": (0.9,)}),
    "ln_param": ("norm", {"eps": (1e-5,)}),
    "gn_param": ("groupnorm", {"eps": (1e-5,)}),
    "dropout_param": ("dropout", {"p": (0.5, 0.3, 0.8), "mode": ("train", "test"), "seed": (123,)}),
}

# Float hyperparameters passed as plain numbers: name -> the values searched (shrinking towards the first).
# reg: 0 leaves the data term alone; a positive one shows a regularisation gradient with the wrong factor,
# whatever convention (reg * sum(W * W) or 0.5 * reg * ...) the loss uses, for the truth is its own loss.
SCALAR_HYPERPARAMETERS: dict[str, tuple[float, ...]] = {"reg": (0.0, 0.1, 1.5)}

# A dict whose `mode` is "test" reads running statistics a training-mode forward leaves in it:
# before a test-mode case, the forward runs once on the case's own arrays with mode "train"
# (filling running_mean / running_var the way the user's code does), and the test-mode forward
# is audited with that dict. name -> (key, the audited value, the value of the warm-up run).
WARM_UP: dict[str, tuple[str, str, str]] = {"bn_param": ("mode", "test", "train")}

# --- array shapes per family, in named dimensions ----------------------------------------------
# `*` after x: affine layers reshape x to (N, D), so x is drawn (N, D) or (N, d1, d2) with d1 d2 = D.
# A conv sandwich with a pool after it draws the pool first and sizes the conv's output to fit it.

LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "conv": {"x": ("N", "C", "H", "W"), "w": ("F", "C", "HH", "WW"), "b": ("F",), "gamma": ("F",), "beta": ("F",)},
    "pool": {"x": ("N", "C", "H", "W")},
    "norm": {"x": ("N", "D"), "gamma": ("D",), "beta": ("D",)},
    "spatial_norm": {"x": ("N", "C", "H", "W"), "gamma": ("C",), "beta": ("C",)},
    "groupnorm": {"x": ("N", "C", "H", "W"), "gamma": ("1", "C", "1", "1"), "beta": ("1", "C", "1", "1")},
    "affine": {"x": ("N", "D*"), "w": ("D", "M"), "b": ("M",)},
    "affine_norm": {"x": ("N", "D*"), "w": ("D", "M"), "b": ("M",), "gamma": ("M",), "beta": ("M",)},
    "temporal_affine": {"x": ("N", "T", "D"), "w": ("D", "M"), "b": ("M",)},
    "dropout": {"x": ("N", "D")},
    "elementwise": {"x": ("N", "D")},
    "loss": {"x": ("N", "C")},
    # recurrent layers (CS231n rnn_layers.py): "4H" is four gates of width H side by side
    "rnn_step": {"x": ("N", "D"), "prev_h": ("N", "H"), "Wx": ("D", "H"), "Wh": ("H", "H"), "b": ("H",)},
    "rnn": {"x": ("N", "T", "D"), "h0": ("N", "H"), "Wx": ("D", "H"), "Wh": ("H", "H"), "b": ("H",)},
    "lstm_step": {"x": ("N", "D"), "prev_h": ("N", "H"), "prev_c": ("N", "H"), "Wx": ("D", "4H"), "Wh": ("H", "4H"), "b": ("4H",)},
    "lstm": {"x": ("N", "T", "D"), "h0": ("N", "H"), "Wx": ("D", "4H"), "Wh": ("H", "4H"), "b": ("4H",)},
    "embedding": {"W": ("V", "D")},
    "temporal_loss": {"x": ("N", "T", "V")},
    "classifier": {"W": ("D", "C"), "w": ("D", "C")},  # a linear classifier's weights: scores X @ W, C classes
}

# Families whose parameter shapes differ between course years: each alternative is tried on the forward
# once (PROBE_SIZES), and the first it accepts (returns an output of x's shape) is drawn; when it accepts
# none (a stub), the first. A 2022 spatial group norm takes gamma (C,), the 2019 one (1, C, 1, 1).
PARAM_CONVENTIONS: dict[str, tuple[dict[str, tuple[str, ...]], ...]] = {
    "groupnorm": ({"gamma": ("1", "C", "1", "1"), "beta": ("1", "C", "1", "1")}, {"gamma": ("C",), "beta": ("C",)}),
    "spatial_norm": ({"gamma": ("C",), "beta": ("C",)}, {"gamma": ("1", "C", "1", "1"), "beta": ("1", "C", "1", "1")}),
}
PROBE_SIZES = {"1": 1, "N": 2, "C": 4, "H": 3, "W": 5, "G": 2}  # C, H, W all different: a wrong shape cannot broadcast by chance

# Arguments that are passed, never differentiated: name -> (what, shape, the dimension that bounds it).
# "indices" are integers in [0, bound) (class labels, word ids: few values, so repeats are common);
# a "mask" is boolean, drawn all True, all False or mixed; "data" is a float array (a classifier's X).
CONSTANTS: dict[str, dict[str, tuple[str, tuple[str, ...], str | None]]] = {
    "loss": {"y": ("indices", ("N",), "C")},
    "temporal_loss": {"y": ("indices", ("N", "T"), "V"), "mask": ("mask", ("N", "T"), None)},
    "embedding": {"x": ("indices", ("N", "T"), "V")},
    "classifier": {"X": ("data", ("N", "D"), None), "x": ("data", ("N", "D"), None),
                   "y": ("indices", ("N",), "C"), "Y": ("indices", ("N",), "C")},
}

# The first rule whose argument names are all present (and whose word, if any, is in the function's
# name) gives the family of a forward no hyperparameter dict names.
FAMILY_BY_ARGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("prev_c",), "", "lstm_step"),
    (("prev_h",), "lstm", "lstm_step"),
    (("prev_h",), "", "rnn_step"),
    (("h0",), "lstm", "lstm"),
    (("h0",), "", "rnn"),
    (("y", "mask"), "", "temporal_loss"),
    (("W", "X", "y"), "", "classifier"),  # linear_svm.py / softmax.py; the other spellings seen in such files:
    (("w", "x", "y"), "", "classifier"),
    (("W", "X", "Y"), "", "classifier"),
    (("x", "W"), "embed", "embedding"),
)

# Sizes each dimension is drawn from (small: a naive conv is a Python loop). H and W of conv and
# pool layers are not drawn: they follow from the output size, the window, the stride and the pad.
DIMENSIONS: dict[str, tuple[int, int]] = {
    "N": (1, 4), "C": (1, 3), "D": (1, 5), "M": (1, 4), "F": (1, 3), "HH": (1, 3), "WW": (1, 3),
    "Ho": (1, 3), "Wo": (1, 3),  # output height and width of conv and pool layers
    "G": (1, 3),  # groups of a group norm; C is drawn as a multiple of G
    "T": (1, 3),  # time steps of a temporal layer
    "H": (1, 3),  # hidden width of a recurrent layer (an image's H is derived from its output, never drawn)
    "V": (1, 4),  # vocabulary of a word embedding, classes of a temporal softmax
}
# A naive conv is four nested Python loops run once per stencil point: its cases stay small (a bug in
# batch, channel or filter indexing shows with two of each), and its budget is a share of the default.
# A naive classifier loss loops over samples and classes: small too, with at least two classes (an
# SVM margin needs a wrong class).
FAMILY_DIMENSIONS: dict[str, dict[str, tuple[int, int]]] = {"conv": {"N": (1, 2), "C": (1, 2), "F": (1, 2)},
                                                            "classifier": {"N": (1, 5), "D": (1, 6), "C": (2, 5)}}
BUDGET_SHARE_BY_RANK = {4: 0.5}  # rank of the main input -> share of --examples (an image batch is not an activation)
MIN_BUDGET = 20
PARAM_MAX_ABS = 3.0  # weights, gamma and beta: moderate values (x gets the full range of regimes)
# tanh and sigmoid gates of a recurrent layer sum D + H products: with |v| <= 1.5 most stay off
# saturation, where a missing (1 - tanh^2) or a dropped forget-gate term shows
FAMILY_MAX_ABS = {"rnn_step": 1.5, "rnn": 1.5, "lstm_step": 1.5, "lstm": 1.5}


def conv_input_size(out: int, window: int, stride: int, pad: int) -> int:
    """H from the output height: (H + 2 pad - HH) / stride + 1 = out, so the division is exact."""
    return (out - 1) * stride + window - 2 * pad


def valid_conv(H: int, HH: int, stride: int, pad: int) -> bool:
    """(H + 2 pad - HH) % stride == 0 and the window fits the padded input."""
    return H >= 1 and H + 2 * pad >= HH and (H + 2 * pad - HH) % stride == 0


def dimension(fam: str, dim: str) -> tuple[int, int]:
    """The sizes `dim` is drawn from in a `fam` op."""
    return FAMILY_DIMENSIONS.get(fam, {}).get(dim, DIMENSIONS[dim])


def split_dimension(dim: str) -> tuple[int, str]:
    """'4H' -> (4, 'H'): a layout's multiple of a drawn dimension (four LSTM gates); 'D' -> (1, 'D')."""
    m = re.fullmatch(r"(\d+)([A-Za-z]\w*)", dim)
    return (int(m[1]), m[2]) if m else (1, dim)


def budget(examples: int, rank: int) -> int:
    """The examples an op whose main input has `rank` axes gets out of `examples`."""
    share = BUDGET_SHARE_BY_RANK.get(rank, 1.0)
    return examples if share >= 1 else max(min(examples, MIN_BUDGET), round(examples * share))


def family(func_name: str, arg_names: tuple[str, ...]) -> str:
    """The family of a forward, from its hyperparameter dicts, then from its argument names.

    Sandwiches of the course's layer_utils take the family of their first array layer: a conv
    (with its relu, pool and spatial norm after it: conv_relu_pool_forward, conv_bn_relu_forward),
    an affine with a norm after it (affine_bn_relu_forward: gamma and beta follow the output width)."""
    fams = [HYPERPARAMETERS[a][0] for a in arg_names if a in HYPERPARAMETERS]
    if "conv" in fams:
        return "conv"
    if "w" in arg_names and "temporal" in func_name:
        return "temporal_affine"
    if fams:
        if fams[0] == "norm" and "w" in arg_names:
            return "affine_norm"
        if fams[0] == "norm" and "spatial" in func_name:
            return "spatial_norm"
        if fams[0] == "dropout" and "w" in arg_names:
            return "affine"
        return fams[0]
    for needs, word, fam in FAMILY_BY_ARGS:
        if all(a in arg_names for a in needs) and word in func_name:
            return fam
    if any(a in LABEL_NAMES for a in arg_names):
        return "loss"
    if "w" in arg_names:
        return "affine"
    return "elementwise"


# --- constructors: classes whose __init__ takes sizes, arrays or hyperparameters ---------------------
# A required constructor parameter gets a value from its (lower-cased) name; each PROFILE is tried in
# turn (image-like classes first when the class name says conv / pool), and the first that builds and
# whose forward and backward accept an input is audited. Parameters with defaults keep them.
# Sizes are small (naive layers are Python loops) and all different where they could be confused (C, F; H, W); K = 3 with stride 1 and pad 1 keeps a convolution's
# arithmetic exact ((H + 2 pad - K) / stride + 1 = H), a pool window of 2 at stride 1 overlaps.
BUILD_SIZES: dict[str, int] = {"D": 4, "M": 3, "hidden": 3, "C": 2, "H": 4, "W": 5, "F": 3, "K": 3, "P": 2, "stride": 1, "pad": 1}
# the second set, drawn for part of the cases: sizes a bug may need (C 3 against F 2, a wider dense layer)
OTHER_BUILD_SIZES: dict[str, int] = {"D": 5, "M": 2, "hidden": 4, "C": 3, "H": 5, "W": 4, "F": 2, "K": 3, "P": 2, "stride": 1, "pad": 1}
PROFILES = ("dense", "image")  # dense: an input (N, D), weights (D, M); image: an input (N, C, H, W), filters (F, C, K, K)
IMAGE_WORDS = ("conv", "pool", "2d", "spatial", "im2col")
# name -> what it is: 'int:X' an integer from the profile, 'shape' an input's (C, H, W) (an int D in the dense
# profile), 'array:...' an array of the listed profile dimensions (per profile), a float.
CONSTRUCTOR_NAMES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("x_dim", "input_dim", "in_dim", "input_shape", "in_shape", "x_shape", "image_shape", "img_shape"), "shape"),
    (("input_size", "in_size", "in_features", "n_in", "n_inputs", "fan_in", "in_dims", "d_in", "num_inputs", "input_units", "d"), "int:D"),
    (("output_size", "out_size", "out_features", "n_out", "n_outputs", "fan_out", "num_classes", "n_classes", "classes",
      "output_dim", "out_dim", "d_out", "num_outputs", "units", "output_units", "m"), "int:M"),
    (("hidden_size", "hidden_dim", "n_hidden", "num_hidden", "hidden", "hidden_units"), "int:hidden"),
    (("in_channels", "n_channels", "channels", "num_channels", "c"), "int:C"),
    (("n_filter", "n_filters", "num_filters", "out_channels", "filters", "num_kernels", "n_kernels", "f"), "int:F"),
    (("h_filter", "w_filter", "filter_size", "kernel_size", "filter_h", "filter_w", "kernel_h", "kernel_w", "field_size",
      "fh", "fw", "hh", "ww", "k"), "int:K"),
    (("pool_h", "pool_w", "pool_size", "pool_height", "pool_width", "size", "window", "window_size", "pool"), "int:P"),
    (("stride", "strides", "step"), "int:stride"),
    (("padding", "pad", "pad_size"), "pad"),
    (("p", "prob", "keep_prob", "drop_prob", "dropout_ratio", "ratio", "rate", "dropout", "p_drop"), "float:0.5"),
    (("momentum",), "float:0.9"), (("eps", "epsilon"), "float:1e-5"), (("alpha", "negative_slope", "leak", "slope"), "float:0.1"),
    (("std", "weight_scale", "weight_init_std", "scale", "init_std"), "float:0.1"), (("lr", "learning_rate"), "float:0.0"),
    # arrays, in the profile's dimensions: a dense layer's (D, M) weights, a convolution's (F, C, K, K) filters
    (("w", "weight", "weights", "kernel"), "array:W"), (("b", "bias", "biases"), "array:b"),
    (("gamma", "scale_param", "g"), "array:gamma"), (("beta", "shift", "beta_param"), "array:beta"),
)
ARRAYS: dict[str, dict[str, tuple[str, ...]]] = {
    "dense": {"W": ("D", "M"), "b": ("M",), "gamma": ("D",), "beta": ("D",)},
    "image": {"W": ("F", "C", "K", "K"), "b": ("F",), "gamma": ("C",), "beta": ("C",)},
}


def constructor_kind(name: str) -> str | None:
    """What a constructor parameter called `name` holds (CONSTRUCTOR_NAMES), or None when gradlab cannot tell."""
    low = name.lower()
    return next((what for names, what in CONSTRUCTOR_NAMES if low in names), None)
