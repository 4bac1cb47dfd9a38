"""Refuse ONNX models that reference external data, without the `onnx` package.

A model whose tensors live in side files (`data_location = EXTERNAL`) makes onnxruntime read
bytes that were never hashed with the model. The bundle verifies one file per artifact, so such
a model is refused before a session is built. This walks the protobuf wire format directly:
ModelProto -> graphs (also inside node attributes, training info and functions) -> tensors:
initializers, sparse initializers (values and indices), node attributes (t, tensors,
sparse_tensor(s), g, graphs: subgraphs at any depth) and function attribute defaults. A test
derives this map from onnx.proto's descriptors, so a tensor-holding field cannot be missed.
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_DEPTH = 64

# field numbers from onnx.proto (message -> {field: kind})
_GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING = (
    "graph", "node", "attr", "tensor", "sparse", "function", "training")
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    # FunctionProto.attribute_proto (11) holds attribute defaults, tensors included.
    _FUNCTION: {7: _NODE, 11: _ATTR},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_EXTERNAL = 1


class NotOnnx(ValueError):
    """The bytes are not a parsable ONNX ModelProto."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotOnnx("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for every field of one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise NotOnnx("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise NotOnnx("length-delimited field runs past the end")
            yield field, wire, buf[pos:pos + length]
            pos += length
        else:
            raise NotOnnx(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise NotOnnx("field runs past the end")


def external_tensors(model_bytes: bytes) -> int:
    """How many tensors in the model point at external data (0 for a self-contained model)."""
    count = 0
    stack: list[tuple[str, memoryview, int]] = [("model", memoryview(model_bytes), 0)]
    while stack:
        kind, buf, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotOnnx("nesting too deep")
        children = _CHILDREN.get(kind, {})
        for field, wire, value in _fields(buf):
            if kind == _TENSOR:
                if field == _TENSOR_EXTERNAL_DATA and wire == 2:
                    count += 1
                    break
                if field == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
                    count += 1
                    break
            elif field in children and isinstance(value, memoryview):
                stack.append((children[field], value, depth + 1))
    return count
