"""The graph executor, the node base class and the node registry."""

from tether.runtime.context import RequestContext, current_request, serving
from tether.runtime.node import Emit, Node, ProcessResult, Produced
from tether.runtime.pipeline import DEFAULT_QUEUE_SIZE, Ack, NodeOutput, Pipeline
from tether.runtime.registry import ENTRY_POINT_GROUP, NodeRegistry, default_registry

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "ENTRY_POINT_GROUP",
    "Ack",
    "Emit",
    "Node",
    "NodeOutput",
    "NodeRegistry",
    "Pipeline",
    "ProcessResult",
    "Produced",
    "RequestContext",
    "current_request",
    "default_registry",
    "serving",
]
