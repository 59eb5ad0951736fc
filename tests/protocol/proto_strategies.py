"""Hypothesis strategies for the protocol Structs, built from their msgspec type info,
plus small helpers shared by the protocol tests."""

from __future__ import annotations

import enum
import json
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from rtms_fast.protocol import MediaType, Message

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=10,
)


def _enum_strategy(cls: type[enum.Enum]) -> st.SearchStrategy[Any]:
    if cls is MediaType:
        return st.integers(min_value=1, max_value=63).map(MediaType)
    return st.sampled_from(list(cls))


def strategy_for_info(info: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy producing values that msgspec encodes and decodes back to equal values."""
    if isinstance(info, mi.StructType):
        return struct_strategy(info)
    if isinstance(info, mi.UnionType):
        return st.one_of([strategy_for_info(t) for t in info.types])
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        return INT64
    if isinstance(info, mi.StrType):
        return TEXT
    if isinstance(info, mi.BytesType):
        return st.binary(max_size=64)
    if isinstance(info, mi.EnumType):
        return _enum_strategy(info.cls)
    if isinstance(info, mi.ListType):
        return st.lists(strategy_for_info(info.item_type), max_size=4)
    if isinstance(info, mi.DictType):
        return st.dictionaries(TEXT, strategy_for_info(info.value_type), max_size=4)
    if isinstance(info, mi.AnyType):
        return JSON_VALUES
    raise NotImplementedError(f"no strategy for {info!r}")


_STRUCTS: dict[type[Any], st.SearchStrategy[Any]] = {}
_BUILDING: set[type[Any]] = set()


def struct_strategy(info: mi.StructType) -> st.SearchStrategy[Any]:
    """Instances of a Struct: required fields always, optional ones sometimes. Recursive
    Structs (a webhook payload's ``object``) go through ``st.deferred``."""
    cls = info.cls
    if cls in _STRUCTS:
        return _STRUCTS[cls]
    if cls in _BUILDING:
        return st.deferred(lambda: _STRUCTS[cls])
    _BUILDING.add(cls)
    try:
        _STRUCTS[cls] = _build_struct_strategy(info)
    finally:
        _BUILDING.discard(cls)
    return _STRUCTS[cls]


def _build_struct_strategy(info: mi.StructType) -> st.SearchStrategy[Any]:
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in info.fields:
        strategy = strategy_for_info(field.type)
        if field.required:
            required[field.name] = strategy
        else:
            if field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT:
                strategy = strategy | st.just(msgspec.UNSET)  # UnsetType default
            optional[field.name] = strategy
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: info.cls(**kw))


_CACHE: dict[type[Any], st.SearchStrategy[Any]] = {}


def strategy_for(cls: type[Any]) -> st.SearchStrategy[Any]:
    """The (cached) strategy for a Struct class."""
    if cls not in _CACHE:
        _CACHE[cls] = strategy_for_info(mi.type_info(cls))
    return _CACHE[cls]


MESSAGE_CLASSES: list[type[Message]] = list(Message.__args__)  # type: ignore[attr-defined]


def sdk_style(obj: Any) -> bytes:
    """JSON as the official SDK writes it (JsonCpp StyledWriter: tabs, " : ", sorted keys,
    trailing newline)."""
    return (json.dumps(obj, indent="\t", sort_keys=True, separators=(",", " : ")) + "\n").encode()
