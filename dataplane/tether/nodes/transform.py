"""Small, declarative transforms of Text and Json, configured entirely in the manifest."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import Field, model_validator

from tether.data import Json, RuntimeData, Text
from tether.manifest.types import CamelModel
from tether.nodes._checks import expect_kind, invalid_input
from tether.runtime.node import Node, ProcessResult


class Upper(CamelModel):
    """Upper-case the whole text."""

    op: Literal["upper"]


class Lower(CamelModel):
    """Lower-case the whole text."""

    op: Literal["lower"]


class Strip(CamelModel):
    """Remove leading and trailing characters: whitespace, or those in `chars`."""

    op: Literal["strip"]
    chars: str | None = None


class Replace(CamelModel):
    """Replace every occurrence of `old` with `new`."""

    op: Literal["replace"]
    old: str = Field(min_length=1)
    """Must not be empty: replacing "" would insert `new` between every character."""
    new: str = ""


TextOperation = Annotated[Upper | Lower | Strip | Replace, Field(discriminator="op")]
"""One step, chosen by its `op` key: {op: replace, old: "a", new: "b"}."""


class TextTransformParams(CamelModel):
    operations: list[TextOperation] = Field(min_length=1)
    """Steps applied in order, each to the previous step's result. At least one: an empty
    list is almost certainly a mistake in the manifest."""


class TextTransform(Node[TextTransformParams]):
    """Applies `operations` to Text; keeps timestamp and metadata."""

    params_model = TextTransformParams

    async def process(self, data: RuntimeData) -> ProcessResult:
        source = expect_kind(self, data, Text)
        text = source.text
        for operation in self.params.operations:
            match operation:
                case Upper():
                    text = text.upper()
                case Lower():
                    text = text.lower()
                case Strip(chars=chars):
                    text = text.strip(chars)
                case Replace(old=old, new=new):
                    text = text.replace(old, new)
        return dataclasses.replace(source, text=text)


class JsonTransformParams(CamelModel):
    select: list[str] | None = Field(default=None, min_length=1)
    """Top-level fields to keep, in this order; None keeps all. Every selected field must
    be present: a misspelt name fails loudly instead of quietly dropping data."""
    rename: dict[str, str] = Field(default_factory=dict)
    """Old name to new name, applied after `select` (so it uses the original names). Every
    renamed field must be present, for the same reason."""

    @model_validator(mode="after")
    def _consistent(self) -> JsonTransformParams:
        if self.select is not None:
            if len(set(self.select)) != len(self.select):
                raise ValueError("select lists a field more than once")
            if unselected := sorted(set(self.rename) - set(self.select)):
                raise ValueError(f"rename names fields that select drops: {', '.join(unselected)}")
        if len(set(self.rename.values())) != len(self.rename):
            raise ValueError("rename gives two fields the same new name")
        return self


class JsonTransform(Node[JsonTransformParams]):
    """Keeps (`select`) and renames (`rename`) top-level fields of a Json object.

    Only Json whose value is an object is accepted. Keeps timestamp and metadata.
    """

    params_model = JsonTransformParams

    async def process(self, data: RuntimeData) -> ProcessResult:
        source = expect_kind(self, data, Json)
        value = source.value
        if not isinstance(value, dict):
            raise invalid_input(
                self, "input.value", f"takes a JSON object, got {type(value).__name__}"
            )
        required = [*(self.params.select or ()), *self.params.rename]
        if missing := sorted({name for name in required if name not in value}):
            raise invalid_input(self, "input.value", f"misses field(s) {', '.join(missing)}")
        names = self.params.select if self.params.select is not None else list(value)
        result: dict[str, object] = {}
        for name in names:
            new_name = self.params.rename.get(name, name)
            if new_name in result:
                raise invalid_input(
                    self,
                    "input.value",
                    f"would hold field {new_name!r} twice after renaming {name!r}",
                )
            result[new_name] = value[name]
        return dataclasses.replace(source, value=result)
