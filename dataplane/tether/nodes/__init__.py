"""Tether's built-in node types, registered through the `tether.nodes` entry points."""

from tether.nodes.audio import AudioChunker, Gain, Resample
from tether.nodes.basic import Delay, PassThrough
from tether.nodes.fault import Fault, InjectedFault
from tether.nodes.transform import JsonTransform, TextTransform
from tether.nodes.vad import VoiceActivityDetector

__all__ = [
    "AudioChunker",
    "Delay",
    "Fault",
    "Gain",
    "InjectedFault",
    "JsonTransform",
    "PassThrough",
    "Resample",
    "TextTransform",
    "VoiceActivityDetector",
]
