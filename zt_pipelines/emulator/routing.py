"""What a served method is, for both halves of the emulator: HTTP routes and gRPC methods.

Kept apart from :mod:`.http_api` and :mod:`.grpc_api` so the modules that add methods
(segmentation, logging, ...) import the shapes from here, and the servers import those modules:
no import circle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zt_pipelines.emulator.world import EmulatorError, World


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request."""

    verb: str
    path: str
    segments: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    caller: str | None
    query_list: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        """The body as JSON.

        Raises:
            EmulatorError: INVALID_ARGUMENT when it is not JSON.
        """
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise EmulatorError("INVALID_ARGUMENT", f"request body is not JSON: {exc}") from exc


Body = Any  # a JSON-able value, or (bytes, content type) for media
Handler = Callable[[World, Request], tuple[int, Body]]


@dataclass(frozen=True)
class Route:
    """One served HTTP method."""

    verb: str
    pattern: re.Pattern[str]
    api: str
    method: str
    write: bool
    handler: Handler
    target: Callable[[Request], str]


def path_target(r: Request) -> str:
    """The default log target of a route: the request path."""
    return r.path


def route(
    verb: str,
    pattern: str,
    api: str,
    method: str,
    write: bool,
    handler: Handler,
    target: Callable[[Request], str] = path_target,
) -> Route:
    """A :class:`Route` whose ``pattern`` must match the whole path."""
    return Route(verb, re.compile(pattern + "$"), api, method, write, handler, target)


Impl = Callable[[World, Any, "str | None"], Any]


@dataclass(frozen=True)
class GrpcMethod:
    """One served gRPC method."""

    service: str
    name: str
    request_type: Any
    response_type: Any
    target: Callable[[Any], str]
    write: bool
    impl: Impl
    api: str
