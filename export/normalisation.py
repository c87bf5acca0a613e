"""The classifier's input normalisation with scalar constants where every channel's are equal.

The exported classifier normalises its uint8 NHWC input in the graph: ``Transpose`` to NCHW,
``Cast``, ``Sub`` mean, ``Div`` std, with per-channel ``[1, 3, 1, 1]`` constants. EfficientNet-Lite
uses one value for every channel (127.5 and 127.5), and then the per-channel form only costs time:
ONNX Runtime's optimiser moves the ``Transpose`` behind ``Sub`` and ``Div``, which then broadcast
a three-value constant over a channels-last tensor, a slow case of its broadcasting kernels.
In the int8 version 5 they took about a fifth of the classifier's kernel time
(``benchmarks/results/xeon-host/model_ops.md``). A scalar constant computes the same values.

:func:`scalar_normalisation` rewrites them. :func:`fakescope.export.quantize.quantize` applies it
to the float model it starts from, so every int8 version has it. The float export does not: the
published float versions stay as a fresh export reproduces them (``tests/training/test_export.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

__all__ = ["NORMALISATION_OPS", "scalar_normalisation"]

logger = logging.getLogger(__name__)

#: The operators between the graph's input and its first layer: the layout change, the cast and
#: the normalisation. The walk from the input stops at the first other operator.
_PATH_OPS = frozenset({"Transpose", "Cast", "Sub", "Div"})
#: The normalisation's operators, whose constant operand may become a scalar.
NORMALISATION_OPS = frozenset({"Sub", "Div"})


def scalar_normalisation(model: onnx.ModelProto) -> list[str]:
    """Make the input normalisation's uniform constants scalars, in place; return the nodes changed.

    Follows the graph's first input through single-consumer ``Transpose``, ``Cast``, ``Sub``
    and ``Div`` nodes. Each ``Sub`` or ``Div`` there whose second operand is an initializer
    (directly or through ``Identity``) holding one value in every element, and of no more
    dimensions than the input (so that it widens nothing by broadcasting), gets a new scalar
    initializer of that value; an operand with different values per channel is left as it is.
    The replaced constants (and ``Identity`` nodes giving them) go where nothing reads them
    any more.
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    identities = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers
    }
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    changed = []
    replaced: set[str] = set()
    tensor = graph.input[0].name
    rank = len(graph.input[0].type.tensor_type.shape.dim)
    while len(consumers.get(tensor, [])) == 1:
        (node,) = consumers[tensor]
        if node.op_type not in _PATH_OPS or node.input[0] != tensor:
            break
        if node.op_type in NORMALISATION_OPS and len(node.input) == 2:
            scalar = _uniform_value(initializers, identities, node.input[1], rank)
            if scalar is not None:
                name = f"{node.output[0]}_scalar"
                graph.initializer.append(numpy_helper.from_array(scalar, name))
                replaced.add(node.input[1])
                node.input[1] = name
                changed.append(node.name or node.output[0])
        tensor = node.output[0]
    _drop_unread(graph, replaced)
    if changed:
        logger.info("normalisation constants as scalars: %s", ", ".join(changed))
    return changed


def _uniform_value(
    initializers: dict[str, onnx.TensorProto], identities: dict[str, str], name: str, rank: int
) -> NDArray[Any] | None:
    """Return the scalar ``name`` holds in every element, or ``None``.

    ``None`` also when it is no constant, or has more than ``rank`` dimensions.
    """
    tensor = initializers.get(identities.get(name, name))
    if tensor is None or len(tensor.dims) > rank:
        return None
    values = numpy_helper.to_array(tensor)
    if values.size == 0 or not bool(np.all(values == values.flat[0])):
        return None
    return np.asarray(values.flat[0], dtype=values.dtype)


def _drop_unread(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the ``Identity`` nodes giving ``names``, and the initializers behind, if unread."""
    read = {name for node in graph.node for name in node.input}
    read |= {output.name for output in graph.output}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] in names]:
        if node.output[0] not in read:
            graph.node.remove(node)
            names = names | {node.input[0]}
    read = {name for node in graph.node for name in node.input}
    read |= {output.name for output in graph.output}
    for tensor in [t for t in graph.initializer if t.name in names and t.name not in read]:
        graph.initializer.remove(tensor)
