"""TextTransform and JsonTransform: operations in order, params parsed from manifest form,
and refusals of wrong kinds, missing fields and inconsistent params."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tether.data import Audio, Json, Text
from tether.errors import DataValidationError
from tether.nodes import JsonTransform, TextTransform
from tether.nodes.transform import JsonTransformParams, Replace, TextTransformParams


def text_transform(*operations: dict[str, Any]) -> TextTransform:
    params = TextTransformParams.model_validate({"operations": list(operations)})
    return TextTransform("text", params)


def json_transform(**params: Any) -> JsonTransform:
    return JsonTransform("json", JsonTransformParams.model_validate(params))


async def test_text_operations_apply_in_the_order_given() -> None:
    node = text_transform(
        {"op": "strip"},
        {"op": "lower"},
        {"op": "replace", "old": "world", "new": "there"},
        {"op": "upper"},
    )
    assert await node.process(Text(text="  Hello World \n")) == Text(text="HELLO THERE")


async def test_text_operation_order_matters() -> None:
    replace_first = text_transform({"op": "replace", "old": "a", "new": "b"}, {"op": "upper"})
    upper_first = text_transform({"op": "upper"}, {"op": "replace", "old": "a", "new": "b"})
    assert await replace_first.process(Text(text="aA")) == Text(text="BA")
    assert await upper_first.process(Text(text="aA")) == Text(text="AA")


async def test_strip_takes_optional_characters_and_replace_defaults_to_deleting() -> None:
    node = text_transform({"op": "strip", "chars": "*"}, {"op": "replace", "old": "-"})
    assert await node.process(Text(text="**a-b-c**")) == Text(text="abc")


async def test_text_transform_keeps_timestamp_and_metadata() -> None:
    node = text_transform({"op": "upper"})
    result = await node.process(Text(text="hi", timestamp=2.0, metadata={"lang": "en"}))
    assert result == Text(text="HI", timestamp=2.0, metadata={"lang": "en"})


def test_text_operations_parse_as_a_union_chosen_by_op() -> None:
    params = TextTransformParams.model_validate(
        {"operations": [{"op": "replace", "old": "a", "new": "b"}, {"op": "upper"}]}
    )
    assert params.operations[0] == Replace(op="replace", old="a", new="b")
    assert [operation.op for operation in params.operations] == ["replace", "upper"]


@pytest.mark.parametrize(
    ("operations", "complaint"),
    [
        ([{"op": "titlecase"}], "titlecase"),
        ([{"op": "replace", "new": "b"}], "old"),
        ([{"op": "replace", "old": "", "new": "b"}], "old"),
        ([{"op": "upper", "old": "a"}], "old"),
        ([{"old": "a"}], "op"),
        ([], "operations"),
    ],
)
def test_text_transform_params_refuse_malformed_operations(
    operations: list[dict[str, Any]], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        TextTransformParams.model_validate({"operations": operations})


async def test_text_transform_refuses_json() -> None:
    with pytest.raises(DataValidationError, match=r"'text' \(TextTransform\) takes Text, got Json"):
        await text_transform({"op": "upper"}).process(Json(value="hi"))


async def test_json_select_keeps_only_the_chosen_fields_in_the_chosen_order() -> None:
    node = json_transform(select=["text", "id"])
    result = await node.process(Json(value={"id": 7, "text": "hi", "debug": [1, 2]}))
    assert isinstance(result, Json)
    assert list(result.value.items()) == [("text", "hi"), ("id", 7)]


async def test_json_rename_uses_the_original_names_after_select() -> None:
    node = json_transform(select=["transcript", "confidence"], rename={"transcript": "text"})
    data = Json(value={"transcript": "hi", "confidence": 0.9, "words": []}, timestamp=1.0)
    assert await node.process(data) == Json(value={"text": "hi", "confidence": 0.9}, timestamp=1.0)


async def test_json_rename_alone_keeps_every_field() -> None:
    node = json_transform(rename={"a": "b", "b": "a"})
    assert await node.process(Json(value={"a": 1, "b": 2, "c": 3})) == Json(
        value={"b": 1, "a": 2, "c": 3}
    )


async def test_json_transform_names_every_missing_field() -> None:
    node = json_transform(select=["id", "text", "lang"], rename={"text": "t"})
    with pytest.raises(DataValidationError, match="misses field\\(s\\) lang, text") as caught:
        await node.process(Json(value={"id": 1}))
    assert caught.value.field == "input.value"


async def test_json_rename_refuses_to_overwrite_a_kept_field() -> None:
    with pytest.raises(DataValidationError, match="field 'b' twice"):
        await json_transform(rename={"a": "b"}).process(Json(value={"a": 1, "b": 2}))


@pytest.mark.parametrize(
    "data",
    [
        Json(value=[1, 2]),
        Json(value="text"),
        Text(text="{}"),
        Audio(samples=np.zeros(1), sample_rate=8000),
    ],
    ids=["list", "string", "text", "audio"],
)
async def test_json_transform_takes_only_json_objects(data: Any) -> None:
    with pytest.raises(DataValidationError, match="'json' \\(JsonTransform\\) takes"):
        await json_transform(select=["a"]).process(data)


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"select": ["a"], "rename": {"b": "c"}}, "select drops: b"),
        ({"select": ["a", "a"]}, "more than once"),
        ({"rename": {"a": "x", "b": "x"}}, "same new name"),
        ({"select": []}, "select"),
        ({"keep": ["a"]}, "keep"),
    ],
)
def test_json_transform_params_refuse_inconsistent_settings(
    params: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        JsonTransformParams.model_validate(params)
