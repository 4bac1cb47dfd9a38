"""A numpy reference executor for Core ML ML Programs, so a `.mlpackage` can be re-gated off macOS.

Core ML predictions run only on macOS. The package itself is a MIL program (ops, constants and
weight blobs) that coremltools can parse anywhere; this module walks its main function op by op and
evaluates each op with numpy, following the MIL op definitions (coremltools
`converters.mil.mil.ops.defs.iOS15` ... `iOS18`). The weights are the package's own bytes: fp16
constants as stored, int8 weights dequantized from the package's quantized data, scale and zero
point; nothing comes from the PyTorch model.

Precision follows the program: every op's result is rounded to the dtype the program declares for
it (fp16 programs keep fp16 values between ops, fp32 programs fp32), while the arithmetic inside
one op runs in fp32 (numpy has no fast fp16 matrix product). That is a reference, not Apple's
runtime: the Neural Engine or GPU may accumulate differently, so a score from here is evidence,
and Apple's runtime on the target device is the final word.

An op type this module does not implement, or an op whose inputs break its definition, raises an
error naming the op; nothing is skipped or approximated.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIL_REFERENCE = "mil-reference-numpy"  # the gated_with name of this executor
WEIGHTS_DIR = "Data/com.apple.CoreML/weights"
ARITHMETIC = ("each op's result rounded to the dtype the program declares (fp16 between ops in "
              "an fp16 program); fp32 arithmetic inside an op")
IOS17_OPSET = 8  # coremltools.target.iOS17: gather stops wrapping negative indices, reshape 0s


class MilProgramError(RuntimeError):
    """The package is not an ML Program this executor can read, or an op broke its definition."""


class UnsupportedOpError(NotImplementedError):
    """The program uses an op type the reference executor does not implement."""

    def __init__(self, op_type: str, op_name: str, source: str) -> None:
        self.op_type = op_type
        self.op_name = op_name
        super().__init__(f"{source}: MIL op type {op_type!r} (op {op_name!r}) is not implemented "
                         "by the numpy reference executor; it is never skipped or approximated")


# ---------------------------------------------------------------------------------------------
# Loading


def _quiet_coremltools() -> Any:
    """Import coremltools without its import-time warnings about missing native proxies."""
    ct_log = logging.getLogger("coremltools")
    level = ct_log.level
    ct_log.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    finally:
        ct_log.setLevel(level)
    return ct


def load_program(package: Path) -> tuple[Any, Any]:
    """Parse the package's ML Program with coremltools (no Core ML runtime needed).

    Returns (program, spec). Weight blobs are read from the package's own weights folder.
    """
    ct = _quiet_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    package = Path(package)
    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise MilProgramError(f"{package}: not an ML Program (model type {kind!r})")
    ct_log = logging.getLogger("coremltools")
    level = ct_log.level
    ct_log.setLevel(logging.WARNING)
    try:
        program = load(spec, specification_version=spec.specificationVersion,
                       file_weights_dir=str(package / WEIGHTS_DIR))
    finally:
        ct_log.setLevel(level)
    return program, spec


def input_ranges(spec: Any) -> dict[str, list[tuple[int, int]]]:
    """Per input, the (lower, upper) bound of each dimension the package accepts."""
    out: dict[str, list[tuple[int, int]]] = {}
    for desc in spec.description.input:
        array = desc.type.multiArrayType
        flex = array.WhichOneof("ShapeFlexibility")
        if flex == "shapeRange":
            ranges = [(int(r.lowerBound), int(r.upperBound)) for r in array.shapeRange.sizeRanges]
        elif flex == "enumeratedShapes":  # a per-dimension envelope of the listed shapes
            shapes = [list(e.shape) for e in array.enumeratedShapes.shapes]
            ranges = [(int(min(d)), int(max(d))) for d in zip(*shapes)]
        else:
            ranges = [(int(d), int(d)) for d in array.shape]
        out[desc.name] = ranges
    return out


# ---------------------------------------------------------------------------------------------
# Kernels: one function per MIL op type. Each receives the op's evaluated inputs by parameter
# name (absent optional inputs are missing from the mapping) and returns the result; the executor
# then rounds it to the declared dtype and checks its rank and static dimensions.


@dataclass(frozen=True)
class OpContext:
    """What a kernel may need besides its inputs: the op's name and the program's opset."""

    op_type: str
    name: str
    opset: int
    source: str

    def fail(self, message: str) -> MilProgramError:
        return MilProgramError(f"{self.source}: op {self.name!r} ({self.op_type}): {message}")


Kernel = Callable[[Mapping[str, Any], OpContext], Any]
KERNELS: dict[str, Kernel] = {}
CONSTEXPR: dict[str, Kernel] = {}


def _kernel(*names: str, table: dict[str, Kernel] = KERNELS) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        for name in names:
            table[name] = fn
        return fn
    return register


def _num(x: Any) -> np.ndarray:
    """A numeric array for arithmetic: fp16 is widened to fp32 (exact), others kept."""
    arr = np.asarray(x)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _ints(x: Any) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _flag(a: Mapping[str, Any], name: str, default: bool = False) -> bool:
    return bool(np.asarray(a[name]).item()) if name in a else default


def _axis(axis: int, rank: int, ctx: OpContext) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.true_divide,
    "floor_div": np.floor_divide, "pow": np.power, "maximum": np.maximum,
    "minimum": np.minimum, "equal": np.equal, "not_equal": np.not_equal, "less": np.less,
    "less_equal": np.less_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}


def _binary(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """Element-wise with numpy broadcasting, as the MIL definitions state."""
    x, y = _num(a["x"]), _num(a["y"])
    if ctx.op_type == "floor_div" and x.dtype.kind == "f":
        return np.floor(x / y)
    return _BINARY[ctx.op_type](x, y)


for _name in _BINARY:
    KERNELS[_name] = _binary


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "cos": np.cos, "sin": np.sin,
    "exp": np.exp, "exp2": np.exp2, "tanh": np.tanh, "sqrt": np.sqrt, "square": np.square,
    "sign": np.sign, "erf": _erf, "sigmoid": _sigmoid, "logical_not": np.logical_not,
    "relu": lambda x: np.maximum(x, 0), "silu": lambda x: x * _sigmoid(x),
    "identity": lambda x: x,
}


def _unary(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return _UNARY[ctx.op_type](_num(a["x"]))


for _name in _UNARY:
    KERNELS[_name] = _unary


@_kernel("rsqrt", "log", "inverse")
def _with_epsilon(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """y = f(x + epsilon), with each op's documented default epsilon."""
    default = {"rsqrt": 1e-12, "log": 1e-45, "inverse": 1e-4}[ctx.op_type]
    x = _num(a["x"])
    eps = _num(a["epsilon"]) if "epsilon" in a else np.asarray(default, dtype=x.dtype)
    shifted = x + eps.astype(x.dtype)
    if ctx.op_type == "rsqrt":
        return 1.0 / np.sqrt(shifted)
    if ctx.op_type == "log":
        return np.log(shifted)
    return 1.0 / shifted


@_kernel("clip")
def _clip(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return np.minimum(np.maximum(_num(a["x"]), _num(a["alpha"])), _num(a["beta"]))


@_kernel("gelu")
def _gelu(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = _num(a["x"])
    mode = str(a.get("mode", "EXACT"))
    if mode == "EXACT":
        return 0.5 * x * (1.0 + _erf(x / np.sqrt(np.asarray(2.0, dtype=x.dtype))))
    if mode == "TANH_APPROXIMATION":
        inner = np.sqrt(np.asarray(2.0 / math.pi, dtype=x.dtype)) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    raise ctx.fail(f"unknown gelu mode {mode!r}")


@_kernel("softmax")
def _softmax(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = _num(a["x"])
    axis = _axis(int(a.get("axis", -1)), x.ndim, ctx)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


@_kernel("layer_norm")
def _layer_norm(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """gamma * (x - mean) / sqrt(var + epsilon) + beta over `axes` (biased variance)."""
    x = _num(a["x"])
    axes = tuple(_axis(v, x.ndim, ctx) for v in _ints(a["axes"])) if "axes" in a \
        else tuple(range(x.ndim))
    eps = float(np.asarray(a.get("epsilon", 1e-5)))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    y = centered / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    norm_shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if "gamma" in a:
        y = y * _param(a["gamma"], axes, norm_shape, ctx)
    if "beta" in a:
        y = y + _param(a["beta"], axes, norm_shape, ctx)
    return y


def _param(p: Any, axes: tuple[int, ...], shape: list[int], ctx: OpContext) -> np.ndarray:
    """gamma/beta have shape x.shape[axes]; broadcast them back over the kept axes."""
    arr = _num(p)
    if list(arr.shape) != [shape[i] for i in sorted(axes)]:
        raise ctx.fail(f"gamma/beta shape {arr.shape} does not match x.shape[axes]")
    return arr.reshape(shape)


@_kernel("linear")
def _linear(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """x @ weight.T + bias; weight is [D_out, D_in]."""
    x, w = _num(a["x"]), _num(a["weight"])
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ctx.fail(f"x {x.shape} and weight {w.shape} ([D_out, D_in]) do not match")
    # One 2-D product: numpy runs a stacked product as one small BLAS call per leading index.
    y = (x.reshape(-1, x.shape[-1]) @ w.T).reshape((*x.shape[:-1], w.shape[0]))
    if "bias" in a:
        y = y + _num(a["bias"])
    return y


@_kernel("matmul")
def _matmul(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x, y = _num(a["x"]), _num(a["y"])
    if _flag(a, "transpose_x") and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if _flag(a, "transpose_y") and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


_REDUCE: dict[str, Callable[..., np.ndarray]] = {
    "reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
    "reduce_prod": np.prod,
}


def _reduce(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = _num(a["x"])
    axes = tuple(_axis(v, x.ndim, ctx) for v in _ints(a["axes"])) \
        if a.get("axes") is not None else None
    return _REDUCE[ctx.op_type](x, axis=axes, keepdims=_flag(a, "keep_dims"))


for _name in _REDUCE:
    KERNELS[_name] = _reduce


@_kernel("cast")
def _cast(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """The executor converts to the declared dtype; the kernel only checks the name."""
    if str(a["dtype"]) not in _DTYPES:
        raise ctx.fail(f"unknown cast dtype {a['dtype']!r}")
    return np.asarray(a["x"])


_DTYPES = {"bool": np.bool_, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
           "uint16": np.uint16, "int32": np.int32, "fp16": np.float16, "fp32": np.float32}


@_kernel("shape")
def _shape(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


@_kernel("reshape")
def _reshape(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """-1 is inferred; 0 copies an input dimension (same index before iOS17, right-aligned and
    1 when out of range from iOS17)."""
    x = np.asarray(a["x"])
    shape = _ints(a["shape"])
    if 0 in shape:
        if ctx.opset >= IOS17_OPSET:
            offset = x.ndim - len(shape)
            shape = [(x.shape[i + offset] if 0 <= i + offset < x.ndim else 1) if d == 0 else d
                     for i, d in enumerate(shape)]
        elif len(shape) == x.ndim:
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        else:
            raise ctx.fail(f"shape {shape} has 0 but its length differs from rank {x.ndim}")
    try:
        return x.reshape(shape)
    except ValueError as exc:
        raise ctx.fail(f"cannot reshape {x.shape} to {shape}: {exc}") from None


@_kernel("transpose")
def _transpose(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = np.asarray(a["x"])
    perm = [_axis(p, x.ndim, ctx) for p in _ints(a["perm"])]
    if sorted(perm) != list(range(x.ndim)):
        raise ctx.fail(f"perm {perm} is not a permutation of rank {x.ndim}")
    return np.transpose(x, perm)


@_kernel("expand_dims")
def _expand_dims(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """Negative axes count from the end of the output (-rank(x)-1 <= axis <= rank(x))."""
    x = np.asarray(a["x"])
    axes = _ints(a["axes"])
    out_rank = x.ndim + len(axes)
    norm = sorted(v + out_rank if v < 0 else v for v in axes)
    if any(not 0 <= v < out_rank for v in norm) or len(set(norm)) != len(norm):
        raise ctx.fail(f"axes {axes} invalid for rank {x.ndim}")
    return np.expand_dims(x, tuple(norm))


@_kernel("squeeze")
def _squeeze(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """Listed axes of size 1 are removed; a listed axis of another size is kept (PyTorch rule)."""
    x = np.asarray(a["x"])
    if "axes" not in a:
        return np.squeeze(x)
    axes = tuple(ax for ax in (_axis(v, x.ndim, ctx) for v in _ints(a["axes"]))
                 if x.shape[ax] == 1)
    return np.squeeze(x, axis=axes)


@_kernel("concat")
def _concat(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    values = [np.asarray(v) for v in a["values"]]
    if any(v.ndim == 0 for v in values):  # scalars join a 1-D concat as one element each
        values = [np.atleast_1d(v) for v in values]
    dtype = np.result_type(*values)
    values = [_num(v.astype(dtype, copy=False)) for v in values]
    axis = _axis(int(a["axis"]), values[0].ndim, ctx)
    if _flag(a, "interleave"):
        if len({v.shape for v in values}) != 1:
            raise ctx.fail("interleave needs inputs of one shape")
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@_kernel("stack")
def _stack(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    values = [_num(v) for v in a["values"]]
    return np.stack(values, axis=_axis(int(a["axis"]), values[0].ndim + 1, ctx))


@_kernel("tile")
def _tile(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = np.asarray(a["x"])
    reps = _ints(a["reps"])
    if len(reps) != x.ndim or min(reps, default=1) < 0:
        raise ctx.fail(f"reps {reps} invalid for rank {x.ndim}")
    return np.tile(x, reps)


@_kernel("select")
def _select(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    if "a" not in a or "b" not in a:
        raise ctx.fail("select without a and b (index form) is not implemented")
    return np.where(np.asarray(a["cond"]).astype(bool), _num(a["a"]), _num(a["b"]))


def _indices(idx: Any, size: int, ctx: OpContext) -> np.ndarray:
    """Gather indices checked against the axis size: negative ones wrap before iOS17, and any
    index outside the axis is an error here (Core ML leaves it undefined)."""
    arr = np.asarray(idx).astype(np.int64)
    low = -size if ctx.opset < IOS17_OPSET else 0
    if arr.size and (arr.min() < low or arr.max() >= size):
        raise ctx.fail(f"index out of range [{low}, {size}): min {arr.min()}, max {arr.max()}")
    return np.where(arr < 0, arr + size, arr)


@_kernel("gather")
def _gather(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """output shape = x.shape[:axis] + indices.shape[batch_dims:] + x.shape[axis+1:]."""
    x = np.asarray(a["x"])
    axis = _axis(int(a.get("axis", 0)), x.ndim, ctx)
    batch_dims = int(a.get("batch_dims", 0))
    idx = _indices(a["indices"], x.shape[axis], ctx)
    if batch_dims == 0:
        return np.take(x, idx, axis=axis)
    if batch_dims < 0:
        batch_dims += idx.ndim
    if not 0 < batch_dims <= min(axis, idx.ndim) or x.shape[:batch_dims] != idx.shape[:batch_dims]:
        raise ctx.fail(f"batch_dims {batch_dims} invalid for x {x.shape}, indices {idx.shape}")
    lead = int(np.prod(x.shape[:batch_dims]))
    xs = x.reshape((lead, *x.shape[batch_dims:]))
    ids = idx.reshape((lead, *idx.shape[batch_dims:]))
    parts = [np.take(xs[i], ids[i], axis=axis - batch_dims) for i in range(lead)]
    out = np.stack(parts) if parts else np.empty((0,), dtype=x.dtype)
    return out.reshape((*x.shape[:batch_dims], *out.shape[1:]))


@_kernel("gather_along_axis")
def _gather_along_axis(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(int(a.get("axis", 0)), x.ndim, ctx)
    idx = _indices(a["indices"], x.shape[axis], ctx)
    if idx.ndim != x.ndim:
        raise ctx.fail(f"indices rank {idx.ndim} differs from x rank {x.ndim}")
    return np.take_along_axis(x, idx, axis=axis)


def _bounds(x: np.ndarray, a: Mapping[str, Any], ctx: OpContext, key: str) -> list[int]:
    vals = _ints(a[key])
    if len(vals) != x.ndim:
        raise ctx.fail(f"{key} has {len(vals)} entries for rank {x.ndim}")
    return vals


@_kernel("slice_by_index")
def _slice_by_index(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """x[begin:end:stride] per axis; a mask ignores begin/end; squeeze_mask takes x[begin]."""
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = _bounds(x, a, ctx, "begin"), _bounds(x, a, ctx, "end")
    stride = _bounds(x, a, ctx, "stride") if "stride" in a else [1] * rank
    masks = {k: ([bool(v) for v in np.asarray(a[k]).reshape(-1)] if k in a else [False] * rank)
             for k in ("begin_mask", "end_mask", "squeeze_mask")}
    index: list[Any] = []
    for i in range(rank):
        if stride[i] == 0:
            raise ctx.fail("stride 0")
        size = x.shape[i]
        b = None if masks["begin_mask"][i] else begin[i]
        if masks["squeeze_mask"][i]:
            pos = 0 if b is None else b
            if not -size <= pos < size:
                raise ctx.fail(f"squeezed index {pos} out of range for axis {i} of size {size}")
            index.append(pos % size)
            continue
        e = None if masks["end_mask"][i] else end[i]
        index.append(slice(b, e, stride[i]))
    return x[tuple(index)]


@_kernel("slice_by_size")
def _slice_by_size(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = _bounds(x, a, ctx, "begin"), _bounds(x, a, ctx, "size")
    index = []
    for i, (b, s) in enumerate(zip(begin, size)):
        b = b + x.shape[i] if b < 0 else b
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


@_kernel("fill")
def _fill(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return np.full(_ints(a["shape"]), _num(a.get("value", 0.0)))


@_kernel("range_1d")
def _range_1d(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return np.arange(_num(a["start"]), _num(a["end"]), _num(a["step"]))


# Compile-time ops: evaluated once, from the package's constants, when the program is loaded.


@_kernel("constexpr_affine_dequantize", table=CONSTEXPR)
def _affine_dequantize(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """scale * (quantized_data - zero_point); vector scale/zero_point run along `axis`."""
    data = np.asarray(a["quantized_data"])
    axis = _axis(int(a["axis"]), data.ndim, ctx)
    shape = [1] * data.ndim
    shape[axis] = data.shape[axis]

    def along(p: Any, what: str) -> np.ndarray:
        arr = np.asarray(p)
        if arr.ndim == 0:
            return arr.astype(np.float32)
        if arr.ndim != 1 or arr.size != data.shape[axis]:
            raise ctx.fail(f"{what} of shape {arr.shape} does not match axis {axis} of "
                           f"{data.shape}")
        return arr.astype(np.float32).reshape(shape)

    return along(a["scale"], "scale") * (data.astype(np.float32)
                                         - along(a["zero_point"], "zero_point"))


@_kernel("constexpr_blockwise_shift_scale", table=CONSTEXPR)
def _blockwise_shift_scale(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    """scale * (data - offset), each scale/offset entry covering one block of `data`."""
    data = np.asarray(a["data"]).astype(np.float32)

    def expand(p: Any, what: str) -> np.ndarray:
        arr = np.asarray(p).astype(np.float32)
        if arr.ndim != data.ndim or any(d % s for d, s in zip(data.shape, arr.shape)):
            raise ctx.fail(f"{what} of shape {arr.shape} does not tile data {data.shape}")
        for axis, (d, s) in enumerate(zip(data.shape, arr.shape)):
            arr = np.repeat(arr, d // s, axis=axis)
        return arr

    offset = expand(a["offset"], "offset") if "offset" in a else 0.0
    return expand(a["scale"], "scale") * (data - offset)


@_kernel("constexpr_cast", table=CONSTEXPR)
def _constexpr_cast(a: Mapping[str, Any], ctx: OpContext) -> np.ndarray:
    return np.asarray(a["source_val"])


# ---------------------------------------------------------------------------------------------
# The executor


@dataclass(frozen=True)
class _Out:
    name: str
    dtype: Any  # numpy dtype, or None for non-tensor values (strings)
    shape: tuple[Any, ...] | None


@dataclass(frozen=True)
class _Step:
    ctx: OpContext
    kernel: Kernel
    consts: tuple[tuple[str, Any], ...]  # bound at load time
    refs: tuple[tuple[str, Any], ...]  # param -> var name, or a tuple of names (variadic)
    outputs: tuple[_Out, ...]


def _np_dtype(var: Any) -> Any:
    from coremltools.converters.mil.mil import types

    dtype = var.dtype
    if dtype is None or types.is_str(dtype):
        return None
    return np.dtype(types.nptype_from_builtin(dtype))


def _widen(value: Any) -> Any:
    return _num(value) if isinstance(value, np.ndarray) else value


def _static_shape(var: Any) -> tuple[Any, ...] | None:
    """The declared shape, with symbolic dimensions as None (checked by rank only)."""
    shape = getattr(var, "shape", None)
    if shape is None:
        return None
    return tuple(int(d) if isinstance(d, (int, np.integer)) else None for d in shape)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS on one thread while the program runs: the products of one ticket's windows are small,
    and on a shared machine waiting BLAS threads spin and starve the numpy work between them."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it with the export extra; without it, run as is
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class MilReference:
    """Evaluates one function of a MIL program with numpy, op by op in program order."""

    def __init__(self, program: Any, source: str = "<program>", function: str = "main") -> None:
        if function not in program.functions:
            raise MilProgramError(f"{source}: no function {function!r} "
                                  f"(has {sorted(program.functions)})")
        func = program.functions[function]
        self.source = source
        self.opset = int(getattr(func, "opset_version", None) or 0)
        self.input_names = list(func.inputs)
        self.input_dtypes = {n: _np_dtype(v) for n, v in func.inputs.items()}
        self.output_names = [v.name for v in func.outputs]
        self.op_counts: Counter[str] = Counter()
        # Constants are kept widened: every kernel computes in fp32 and fp16 -> fp32 is exact.
        self._consts: dict[str, Any] = {}
        steps: list[_Step] = []
        for op in func.operations:
            self.op_counts[op.op_type] += 1
            ctx = OpContext(op.op_type, op.name, self.opset, source)
            if op.blocks:
                raise UnsupportedOpError(op.op_type, op.name, source)
            outputs = tuple(_Out(v.name, _np_dtype(v), _static_shape(v)) for v in op.outputs)
            if op.op_type == "const":
                self._consts[outputs[0].name] = _widen(self._const_value(op.outputs[0],
                                                                         outputs[0]))
            elif op.op_type in CONSTEXPR:
                args = {k: self._const_input(v, ctx) for k, v in op.inputs.items()}
                result = CONSTEXPR[op.op_type](args, ctx)
                self._consts[outputs[0].name] = _widen(self._finish(result, outputs[0], ctx))
            elif op.op_type in KERNELS:
                steps.append(self._step(op, ctx, outputs))
            else:
                raise UnsupportedOpError(op.op_type, op.name, source)
        self._steps = tuple(steps)
        produced = set(self._consts) | set(self.input_names) | {
            o.name for s in self._steps for o in s.outputs}
        missing = [n for n in self.output_names if n not in produced]
        if missing:
            raise MilProgramError(f"{source}: outputs {missing} are produced by no op")
        log.debug("%s: opset %d, %d ops evaluated per call, op types %s", source, self.opset,
                  len(self._steps), dict(self.op_counts))

    @classmethod
    def from_package(cls, package: Path) -> MilReference:
        program, _ = load_program(package)
        return cls(program, source=str(package))

    @property
    def compute_ops(self) -> int:
        """Ops evaluated per call (constants and compile-time ops are evaluated at load)."""
        return len(self._steps)

    @staticmethod
    def _const_value(var: Any, out: _Out) -> Any:
        val = var.val
        if out.dtype is None:
            return val
        return np.asarray(val, dtype=out.dtype)

    def _const_input(self, v: Any, ctx: OpContext) -> Any:
        if isinstance(v, (tuple, list)):
            return tuple(self._const_input(x, ctx) for x in v)
        if v.name not in self._consts:
            raise ctx.fail(f"compile-time op reads {v.name!r}, which is not a constant")
        return self._consts[v.name]

    def _step(self, op: Any, ctx: OpContext, outputs: tuple[_Out, ...]) -> _Step:
        """Constant inputs are bound now, so a call only looks up activations."""
        consts: list[tuple[str, Any]] = []
        refs: list[tuple[str, Any]] = []
        for param, v in op.inputs.items():
            if isinstance(v, (tuple, list)):
                refs.append((param, tuple(x.name for x in v)))
            elif v.name in self._consts:
                consts.append((param, self._consts[v.name]))
            else:
                refs.append((param, v.name))
        return _Step(ctx, KERNELS[op.op_type], tuple(consts), tuple(refs), outputs)

    def _finish(self, result: Any, out: _Out, ctx: OpContext) -> Any:
        """Round to the declared dtype and check the declared rank and static dimensions."""
        if out.dtype is None:
            return result
        arr = np.asarray(result)
        if out.dtype == np.bool_ and arr.dtype != np.bool_:
            arr = arr != 0
        arr = arr.astype(out.dtype, copy=False)
        if out.shape is not None and (arr.ndim != len(out.shape) or any(
                d is not None and d != n for d, n in zip(out.shape, arr.shape))):
            raise ctx.fail(f"result shape {arr.shape} does not match the declared "
                           f"{tuple('?' if d is None else d for d in out.shape)}")
        return arr

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate the function on `feeds` (one array per input); returns every output."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise MilProgramError(f"{self.source}: missing inputs {missing}")
        env: dict[str, Any] = dict(self._consts)
        for name in self.input_names:
            dtype = self.input_dtypes[name]
            env[name] = np.asarray(feeds[name], dtype=dtype)
        with one_blas_thread(), np.errstate(over="ignore", under="ignore", invalid="ignore",
                                             divide="ignore"):
            for step in self._steps:
                args = dict(step.consts)
                for param, ref in step.refs:
                    args[param] = tuple(env[r] for r in ref) if isinstance(ref, tuple) \
                        else env[ref]
                try:
                    result = step.kernel(args, step.ctx)
                except (MilProgramError, UnsupportedOpError):
                    raise
                except Exception as exc:  # noqa: BLE001 - name the op that failed
                    raise step.ctx.fail(f"{type(exc).__name__}: {exc}") from exc
                results = result if len(step.outputs) > 1 else (result,)
                for out, value in zip(step.outputs, results):
                    env[out.name] = self._finish(value, out, step.ctx)
        return {name: np.asarray(env[name]) for name in self.output_names}
