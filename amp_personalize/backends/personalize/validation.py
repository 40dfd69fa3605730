"""Requests checked against botocore's own service model, for what botocore leaves unchecked.

botocore validates types and required members but not lengths, list sizes or patterns, so an
11-event PutEvents or a 26-item impression only fails at the service, after the network round
trip, as a 400 for the whole batch. Every request the project builds passes through `validate`
first, with the limits read from the service model (never restated here).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

import botocore.session
from botocore.model import OperationModel, Shape


class RequestInvalid(ValueError):
    """A request the service would reject; the message names the member path and the limit."""


@lru_cache(maxsize=None)
def operation_model(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


@lru_cache(maxsize=None)
def _pattern(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _size(meta: dict, size: int, unit: str, path: str, problems: list[str]) -> None:
    if "min" in meta and size < meta["min"]:
        problems.append(f"{path}: {size} {unit}, at least {meta['min']} allowed")
    if "max" in meta and size > meta["max"]:
        problems.append(f"{path}: {size} {unit}, at most {meta['max']} allowed")


def _check(shape: Shape, value: object, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object")
            return
        for name in shape.required_members:
            if name not in value:
                problems.append(f"{path}.{name}: required")
        for name, member_value in value.items():
            if name not in shape.members:
                problems.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                _check(shape.members[name], member_value, f"{path}.{name}", problems)
        return
    if kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        _size(meta, len(value), "items", path, problems)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]", problems)
        return
    if kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for key, item in value.items():
            _check(shape.key, key, f"{path}<key>", problems)
            _check(shape.value, item, f"{path}[{key!r}]", problems)
        return
    if kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string")
            return
        _size(meta, len(value), "characters", path, problems)
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):  # Java-style: whole value
            problems.append(f"{path}: does not match {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer")
            return
        if "min" in meta and value < meta["min"]:
            problems.append(f"{path}: {value} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            problems.append(f"{path}: {value} is above the maximum {meta['max']}")
        return
    if kind in ("float", "double") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        problems.append(f"{path}: expected a number")
    if kind == "timestamp" and not isinstance(value, (datetime, int, float)):
        problems.append(f"{path}: expected a timestamp")
    if kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: expected true or false")


def validate(service: str, operation: str, params: dict) -> None:
    """Raise RequestInvalid listing every member of `params` the service model forbids."""
    problems: list[str] = []
    _check(operation_model(service, operation).input_shape, params, operation, problems)
    if problems:
        raise RequestInvalid("; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
