"""The executor: unary and streaming runs over 1:1, 1:N, N:1 and N:M graphs, failures,
cancellation, backpressure, stream acknowledgements and acks paired with outputs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

import pytest
from sample_nodes import Lifecycle, Slow, SlowTeardown

from tether.data import RuntimeData, Text
from tether.errors import InputStreamError, NodeExecutionError
from tether.runtime import Ack, NodeOutput, Pipeline
from tether.runtime.pipeline import AckedOutput


async def texts(items: Iterable[str]) -> AsyncIterator[RuntimeData]:
    for item in items:
        yield Text(text=item)


async def drain(outputs: AsyncGenerator[NodeOutput, None]) -> list[NodeOutput]:
    async with contextlib.aclosing(outputs) as running:
        return [output async for output in running]


async def collect(pipeline: Pipeline, items: Iterable[str]) -> list[tuple[str, str]]:
    outputs = await drain(pipeline.stream(texts(items)))
    return [(o.node_id, o.data.text) for o in outputs if isinstance(o.data, Text)]


CHAIN = {"a": ("Suffix", {"suffix": "-a"}), "b": ("Suffix", {"suffix": "-b"})}
FAN_OUT = {
    "a": ("Suffix", {"suffix": "-a"}),
    "left": ("Suffix", {"suffix": "-l"}),
    "right": ("Suffix", {"suffix": "-r"}),
}
FAN_IN = {
    "one": ("Suffix", {"suffix": "-1"}),
    "two": ("Suffix", {"suffix": "-2"}),
    "join": ("Suffix", {"suffix": "-j"}),
}
N_TO_M = {
    "one": ("Suffix", {"suffix": "-1"}),
    "two": ("Suffix", {"suffix": "-2"}),
    "x": ("Suffix", {"suffix": "-x"}),
    "y": ("Suffix", {"suffix": "-y"}),
}
N_TO_M_EDGES = [("one", "x"), ("one", "y"), ("two", "x"), ("two", "y")]


async def test_unary_chain_runs_each_node_once(make_pipeline) -> None:
    outputs = await make_pipeline(CHAIN, [("a", "b")]).run(Text(text="x"))
    assert outputs == [NodeOutput("b", Text(text="x-a-b"))]


async def test_unary_fan_out_gives_every_branch_the_item(make_pipeline) -> None:
    pipeline = make_pipeline(FAN_OUT, [("a", "left"), ("a", "right")])
    outputs = await pipeline.run(Text(text="x"))
    assert sorted((o.node_id, o.data.text) for o in outputs) == [
        ("left", "x-a-l"),
        ("right", "x-a-r"),
    ]


async def test_unary_fan_in_receives_from_every_source(make_pipeline) -> None:
    pipeline = make_pipeline(FAN_IN, [("one", "join"), ("two", "join")])
    outputs = await pipeline.run(Text(text="x"))
    assert sorted(o.data.text for o in outputs) == ["x-1-j", "x-2-j"]


async def test_unary_n_to_m_delivers_every_path(make_pipeline) -> None:
    outputs = await make_pipeline(N_TO_M, N_TO_M_EDGES).run(Text(text="x"))
    assert sorted(o.data.text for o in outputs) == ["x-1-x", "x-1-y", "x-2-x", "x-2-y"]


async def test_streaming_chain_keeps_order(make_pipeline) -> None:
    items = [str(i) for i in range(200)]
    outputs = await collect(make_pipeline(CHAIN, [("a", "b")], queue_size=2), items)
    assert outputs == [("b", f"{i}-a-b") for i in items]


async def test_streaming_fan_out_keeps_order_per_branch(make_pipeline) -> None:
    items = [str(i) for i in range(100)]
    outputs = await collect(make_pipeline(FAN_OUT, [("a", "left"), ("a", "right")]), items)
    assert [t for n, t in outputs if n == "left"] == [f"{i}-a-l" for i in items]
    assert [t for n, t in outputs if n == "right"] == [f"{i}-a-r" for i in items]


async def test_streaming_fan_in_keeps_order_per_path_and_loses_nothing(make_pipeline) -> None:
    items = [str(i) for i in range(100)]
    outputs = await collect(make_pipeline(FAN_IN, [("one", "join"), ("two", "join")]), items)
    assert [t for _, t in outputs if t.endswith("-1-j")] == [f"{i}-1-j" for i in items]
    assert [t for _, t in outputs if t.endswith("-2-j")] == [f"{i}-2-j" for i in items]
    assert len(outputs) == 200


async def test_streaming_n_to_m_delivers_every_item_on_every_path(make_pipeline) -> None:
    items = [str(i) for i in range(50)]
    outputs = await collect(make_pipeline(N_TO_M, N_TO_M_EDGES), items)
    counts = Counter(node for node, _ in outputs)
    assert counts == {"x": 100, "y": 100}
    for sink in ("x", "y"):
        for source in ("1", "2"):
            path = [t for n, t in outputs if n == sink and t.endswith(f"-{source}-{sink}")]
            assert path == [f"{i}-{source}-{sink}" for i in items]


async def test_failing_node_stops_the_run_naming_the_node(make_pipeline) -> None:
    nodes = {"first": ("Suffix", {}), "bomb": ("Explode", {}), "last": ("Lifecycle", {})}
    pipeline = make_pipeline(nodes, [("first", "bomb"), ("bomb", "last")])
    with pytest.raises(NodeExecutionError) as caught:
        await collect(pipeline, ["fine", "boom", "never"])
    assert caught.value.node_id == "bomb"
    assert "detonated on purpose" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert Lifecycle.events == ["setup last", "teardown last"]


async def test_failing_unary_run_raises_node_error(make_pipeline) -> None:
    pipeline = make_pipeline({"bomb": ("Explode", {})}, [])
    with pytest.raises(NodeExecutionError, match="'bomb' failed: RuntimeError: detonated"):
        await pipeline.run(Text(text="boom"))


async def test_failing_input_iterator_is_reported_as_input_error(make_pipeline) -> None:
    async def broken() -> AsyncIterator[RuntimeData]:
        yield Text(text="one")
        raise OSError("microphone unplugged")

    pipeline = make_pipeline(CHAIN, [("a", "b")])
    with pytest.raises(InputStreamError, match="microphone unplugged"):
        await drain(pipeline.stream(broken()))


async def test_emitting_to_an_undeclared_port_is_a_node_error(make_pipeline) -> None:
    with pytest.raises(NodeExecutionError, match="unknown port 'nowhere'"):
        await make_pipeline({"w": ("WrongPort", {})}, []).run(Text(text="x"))


async def test_cancelling_a_stream_tears_down_every_node(make_pipeline) -> None:
    nodes = {"life": ("Lifecycle", {}), "slow": ("Slow", {"seconds": 3600})}
    pipeline = make_pipeline(nodes, [("life", "slow")])
    started = asyncio.Event()

    async def endless() -> AsyncIterator[RuntimeData]:
        while True:
            started.set()
            yield Text(text="tick")

    async def consume() -> None:
        async with contextlib.aclosing(pipeline.stream(endless())) as outputs:
            async for _ in outputs:
                pass

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Lifecycle.events == ["setup life", "teardown life"]
    # The autouse fixture in tests/conftest.py also fails the test if any task remains.


async def test_stopping_early_tears_down_the_run(make_pipeline) -> None:
    pipeline = make_pipeline({"life": ("Lifecycle", {})}, [])
    async with contextlib.aclosing(pipeline.stream(texts(str(i) for i in range(1000)))) as outputs:
        async for _ in outputs:
            break
    assert Lifecycle.events == ["setup life", "teardown life"]


async def test_slow_sink_bounds_what_is_buffered(make_pipeline) -> None:
    queue_size = 4
    pipeline = make_pipeline(
        {"fast": ("Suffix", {}), "slow": ("Slow", {"seconds": 0.002})},
        [("fast", "slow")],
        queue_size=queue_size,
    )
    pulled = 0
    most_in_flight = 0

    async def counted() -> AsyncIterator[RuntimeData]:
        nonlocal pulled, most_in_flight
        for i in range(300):
            pulled += 1
            most_in_flight = max(most_in_flight, pulled - Slow.processed)
            yield Text(text=str(i))

    async with contextlib.aclosing(pipeline.stream(counted())) as outputs:
        received = [o async for o in outputs]
    assert len(received) == 300
    # Two inboxes and the result queue of `queue_size` each, plus one item in each
    # node's hands and one in the feeder's: anything more would be unbounded buffering.
    assert most_in_flight <= 3 * queue_size + 3


async def test_each_run_gets_fresh_nodes(make_pipeline) -> None:
    pipeline = make_pipeline({"batch": ("Batch", {"size": 2})}, [])
    assert [o.data.text for o in await pipeline.run(Text(text="a"))] == ["a"]
    assert [o.data.text for o in await pipeline.run(Text(text="b"))] == ["b"]


async def numbered(items: Iterable[str]) -> AsyncIterator[tuple[int, RuntimeData]]:
    for seq, item in enumerate(items, start=1):
        yield seq, Text(text=item)


async def acked_run(pipeline: Pipeline, items: list[str]) -> list[object]:
    async with contextlib.aclosing(pipeline.stream_acked(numbered(items))) as outputs:
        return [o.seq if isinstance(o, Ack) else o.data.text async for o in outputs]  # type: ignore[union-attr]


async def test_stateless_stream_acknowledges_each_input_after_its_output(make_pipeline) -> None:
    events = await acked_run(make_pipeline(CHAIN, [("a", "b")]), ["x", "y", "z"])
    assert events == ["x-a-b", 1, "y-a-b", 2, "z-a-b", 3]


async def test_buffering_node_delays_acks_until_it_is_idle(make_pipeline) -> None:
    pipeline = make_pipeline({"batch": ("Batch", {"size": 3})}, [])
    events = await acked_run(pipeline, ["a", "b", "c", "d", "e"])
    # Nothing is acknowledged while "a" or "d" wait in the batch; the end flushes it.
    assert events == ["a+b+c", 2, 3, "d+e", 5]


async def test_fan_in_acknowledges_only_what_every_path_finished(make_pipeline) -> None:
    nodes = {
        "quick": ("Suffix", {"suffix": "-q"}),
        "batch": ("Batch", {"size": 2}),
        "join": ("Suffix", {}),
    }
    pipeline = make_pipeline(nodes, [("quick", "join"), ("batch", "join")])
    events = await acked_run(pipeline, ["a", "b", "c"])
    acks = [e for e in events if isinstance(e, int)]
    assert acks == [1, 2, 3]
    # The quick path finishes "a" at once, but ack 1 waits for the batch holding it.
    assert events.index("a+b") < events.index(1)


async def coalesced_run(pipeline: Pipeline, items: list[str]) -> list[object]:
    async with contextlib.aclosing(pipeline.stream_coalesced(numbered(items))) as events:
        return [
            (e.output.data.text, e.ack.seq) if isinstance(e, AckedOutput) else e  # type: ignore[union-attr]
            async for e in events
        ]


async def test_coalesced_stream_pairs_each_output_with_the_ack_queued_behind_it(
    make_pipeline,
) -> None:
    events = await coalesced_run(make_pipeline({"a": ("Suffix", {"suffix": "-a"})}, []), ["x", "y"])
    assert events == [("x-a", 1), ("y-a", 2)]


async def test_coalesced_stream_sends_acks_that_follow_no_output_on_their_own(
    make_pipeline,
) -> None:
    pipeline = make_pipeline({"batch": ("Batch", {"size": 3})}, [])
    events = await coalesced_run(pipeline, ["a", "b", "c", "d", "e"])
    assert events == [("a+b+c", 2), Ack(3), ("d+e", 5)]


async def test_tap_sees_every_node_output(make_pipeline) -> None:
    seen: list[tuple[str, str, str]] = []
    pipeline = make_pipeline(CHAIN, [("a", "b")])
    await pipeline.run(Text(text="x"), tap=lambda n, p, d: seen.append((n, p, d.text)))  # type: ignore[union-attr]
    assert seen == [("a", "out", "x-a"), ("b", "out", "x-a-b")]


def test_registry_rejects_a_clashing_node_type(registry) -> None:
    from tether.errors import NodeRegistrationError
    from tether.runtime import Node

    class Suffix(Node):  # type: ignore[type-arg]
        pass

    with pytest.raises(NodeRegistrationError, match="already registered"):
        registry.register(Suffix)


def test_registry_names_known_types_for_an_unknown_one(registry) -> None:
    from tether.errors import UnknownNodeTypeError

    with pytest.raises(
        UnknownNodeTypeError, match="known: AwaitsCancelledFuture, Batch, BrokenTeardown"
    ):
        registry.get("Nope")


async def test_a_run_returns_only_after_every_node_finished_its_teardown(make_pipeline) -> None:
    pipeline = make_pipeline(
        {"first": ("SlowTeardown", {}), "sink": ("SlowTeardown", {})}, [("first", "sink")]
    )
    assert await pipeline.run(Text(text="x")) == [NodeOutput("sink", Text(text="x"))]
    assert sorted(SlowTeardown.finished) == ["first", "sink"]


async def test_a_failing_teardown_fails_the_run_even_in_a_sink(make_pipeline) -> None:
    pipeline = make_pipeline({"sink": ("BrokenTeardown", {})}, [])
    with pytest.raises(NodeExecutionError, match="'sink' failed: teardown failed: OSError"):
        await pipeline.run(Text(text="x"))


async def test_a_cancelled_operation_inside_a_node_fails_the_run_instead_of_hanging(
    make_pipeline,
) -> None:
    pipeline = make_pipeline({"node": ("AwaitsCancelledFuture", {})}, [])
    with pytest.raises(NodeExecutionError, match="'node' failed: CancelledError"):
        async with asyncio.timeout(30):  # a hang guard, not a latency bound
            await pipeline.run(Text(text="x"))
