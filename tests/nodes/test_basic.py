"""PassThrough and Delay, and how every built-in node is found and configured."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

import tether.nodes
from tether.data import Binary, Text
from tether.manifest import NoParams
from tether.nodes import Delay, PassThrough
from tether.nodes.basic import DelayParams
from tether.runtime import default_registry


async def test_pass_through_returns_its_input_unchanged() -> None:
    node = PassThrough("p", NoParams())
    data = Binary(data=b"\x00\x01", mime_type="audio/opus", timestamp=1.5, metadata={"k": "v"})
    assert await node.process(data) is data
    assert await node.flush() is None
    assert node.is_idle


@pytest.mark.looptime
async def test_delay_holds_each_input_for_its_duration() -> None:
    node = Delay("d", DelayParams.model_validate({"delay": "30s"}))
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await node.process(Text(text="late"))
    assert result == Text(text="late")
    assert loop.time() - started == pytest.approx(30.0)


@pytest.mark.looptime
async def test_delay_can_be_cancelled_while_it_waits() -> None:
    node = Delay("d", DelayParams.model_validate({"delay": "10m"}))
    task = asyncio.create_task(node.process(Text(text="never")))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.parametrize("delay", ["-1s", "fast", "11m", True])
def test_delay_refuses_durations_it_cannot_honour(delay: object) -> None:
    with pytest.raises(ValidationError, match="delay"):
        DelayParams.model_validate({"delay": delay})


BUILT_IN = [name for name in tether.nodes.__all__ if name != "InjectedFault"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_node_is_registered_under_its_entry_point_name(name: str) -> None:
    assert default_registry().get(name) is getattr(tether.nodes, name)


@pytest.mark.parametrize("name", BUILT_IN)
def test_node_params_are_written_in_camel_case(name: str) -> None:
    params_model = getattr(tether.nodes, name).params_model
    keys = params_model.model_json_schema(by_alias=True).get("properties", {})
    assert all("_" not in key for key in keys), sorted(keys)


def test_node_params_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="dealy"):
        DelayParams.model_validate({"delay": "1s", "dealy": "2s"})
