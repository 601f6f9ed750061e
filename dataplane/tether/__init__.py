"""Tether: run media and AI pipeline nodes on remote pipeline servers.

    import tether

    pipeline = tether.Pipeline.from_manifest(tether.load_manifest("pipeline.yaml"))
    outputs = await pipeline.run(tether.Text(text="hello"))

Clients for remote servers live in `tether.transport`, the server in `tether.server`,
and every exception in `tether.errors`.
"""

__version__ = "0.1.0"

from tether.data import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.errors import TetherError
from tether.manifest import (
    CamelModel,
    Duration,
    Manifest,
    NoParams,
    load_manifest,
    validate_manifest,
)
from tether.runtime import (
    Ack,
    Emit,
    Node,
    NodeOutput,
    NodeRegistry,
    Pipeline,
    ProcessResult,
    default_registry,
)

__all__ = [
    "Ack",
    "Audio",
    "Binary",
    "CamelModel",
    "Duration",
    "Emit",
    "Json",
    "Manifest",
    "NoParams",
    "Node",
    "NodeOutput",
    "NodeRegistry",
    "Pipeline",
    "ProcessResult",
    "RuntimeData",
    "Tensor",
    "TetherError",
    "Text",
    "Video",
    "__version__",
    "default_registry",
    "load_manifest",
    "validate_manifest",
]
