"""An ONNX file as a teacher, run by ONNX Runtime.

Its penultimate features are the input of its final ``Gemm``/``MatMul``: lnpt walks back from
the graph's (first) output through ``Add``/``Identity``/``Cast`` nodes to that layer, adds its
input to the graph's outputs and runs the amended graph, so one run gives logits and features.
A graph of another shape names its feature tensor explicitly (``features=``). Input size,
normalisation and class names come from the JSON sidecar (:mod:`.sidecar`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .base import Guidance, TeacherInfo
from .contract import probe_feature_dim
from .sidecar import file_digest, find_sidecar, parse_sidecar

_PASS_THROUGH = {"Add", "Identity", "Cast"}  # bias add after MatMul, renames, dtype casts
_HEADS = {"Gemm", "MatMul"}


def final_layer_input(graph: Any) -> str:
    """Name of the tensor that enters the layer producing the graph's first output."""
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    current = graph.output[0].name
    for _ in range(len(graph.node)):
        node = producer.get(current)
        if node is None:
            break
        moving = [i for i in node.input if i and i not in constants]
        if node.op_type in _HEADS and moving:
            return moving[0]
        if node.op_type not in _PASS_THROUGH or len(moving) != 1:
            break
        current = moving[0]
    raise CheckpointError(
        f"no final Gemm/MatMul feeds the output {graph.output[0].name!r} of this ONNX graph; name "
        "the penultimate feature tensor explicitly (features=NAME, --teacher-features NAME)")


def _with_features_output(model: Any, features: str | None, path: Path) -> tuple[bytes, str]:
    import onnx  # heavy; imported only when an ONNX teacher is loaded

    graph = model.graph
    name = features or final_layer_input(graph)
    known = {v for n in graph.node for v in n.output} | {i.name for i in graph.input}
    if name not in known:
        raise CheckpointError(f"{path} has no tensor named {name!r}; name one of its node outputs")
    if name not in {o.name for o in graph.output}:
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), name


class OnnxTeacher:
    """Frozen ONNX graph answering with its logits and its final layer's input."""

    # Teacher protocol: no torch network to fingerprint (its file digest is its identity);
    # it runs on this machine's cores, so prefetch only when cores are idle.
    prefers_prefetch = False
    model = None

    def __init__(self, session: Any, features: str, info: TeacherInfo, identity: str | None = None) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._logits = session.get_outputs()[0].name
        self._features = features
        self.info = info
        self.identity = identity

    def guide(self, x: torch.Tensor) -> Guidance:
        logits, features = self._session.run([self._logits, self._features],
                                             {self._input: x.detach().cpu().numpy().astype(np.float32)})
        return Guidance(torch.from_numpy(np.ascontiguousarray(logits)),
                        torch.from_numpy(np.ascontiguousarray(features)).flatten(1))

    @classmethod
    def from_file(cls, path: str | Path, sidecar: str | Path | None = None,
                  features: str | None = None) -> "OnnxTeacher":
        import onnx  # heavy; imported only when an ONNX teacher is loaded
        import onnxruntime as ort  # likewise (docs/DEPENDENCIES.md, deployment)

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"teacher {path} does not exist")
        side = find_sidecar(path, sidecar)
        data = parse_sidecar(side)
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001  protobuf raises DecodeError and friends
            raise CheckpointError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
        blob, name = _with_features_output(model, features, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  ONNX Runtime raises its own types
            raise CheckpointError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        identity = f"onnx:{file_digest(path, side)}:{name}"
        teacher = cls(session, name, TeacherInfo(f"onnx:{path.name}", 1.0, 0, data), identity)
        dim = probe_feature_dim(teacher.guide, data, path, side)
        teacher.info = TeacherInfo(teacher.info.model, 1.0, dim, data)
        return teacher
