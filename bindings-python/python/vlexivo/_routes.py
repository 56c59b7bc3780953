"""A paywall's route table: ``"METHOD /path"``, ``"/path"`` (any method) and ``"/prefix/*"``
keys, matched against the route the framework runs.

Behind a router (Starlette, FastAPI, Flask) a key names a declared route by its template, as
written in the app (``"GET /items/{item_id}"``, ``"GET /items/<int:item_id>"``; converters may be
left out); the router decides which route a request runs, and the table only prices that route.
A key that names no route of the app is a configuration error, found on the first request. Behind
a plain ASGI/WSGI app (no router) a key is matched against the path the app itself reads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._gate import Gate, priced_method

# Converters inside a template: "{id:int}" -> "{id}", "<int:id>" / "<any(a,b):id>" -> "<id>".
_BRACE_CONV = re.compile(r"\{([^{}:]+):[^{}]*\}")
_ANGLE_CONV = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


def template_form(path: str) -> str:
    """A route template without its converters, for comparing a key with a declared route."""
    if "{" in path:
        path = _BRACE_CONV.sub(r"{\1}", path)
    if "<" in path:
        path = _ANGLE_CONV.sub(r"<\1>", path)
    return path


def parse_key(key: str) -> tuple[str | None, str]:
    """``"POST /api/v1/x"`` -> ("POST", "/api/v1/x"); ``"/x"`` -> (None, "/x") for any method."""
    key = key.strip()
    if key == "*":
        return None, "/*"
    if " " in key:
        method, path = key.split(None, 1)
        return method.upper(), path.strip()
    return None, key


class RouteTable:
    """Exact ``METHOD /path`` (or ``/path`` for any method) and ``/prefix/*`` keys, each with its
    gate. HEAD is priced as GET."""

    __slots__ = ("exact", "labels", "prefixes")

    def __init__(self, entries: Iterable[tuple[str, Gate]]) -> None:
        self.exact: dict[tuple[str | None, str], Gate] = {}
        self.prefixes: list[tuple[str | None, str, Gate]] = []
        self.labels: list[tuple[str | None, str, bool, str]] = []
        for key, gate in entries:
            method, path = parse_key(key)
            prefix = path.endswith("*")
            path = template_form(path[:-1] if prefix else path)
            self.labels.append((method, path, prefix, key))
            if prefix:
                self.prefixes.append((method, path, gate))
            else:
                self.exact[(method, path)] = gate
        # Longest prefix first.
        self.prefixes.sort(key=lambda t: len(t[1]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self.labels)

    def match(self, method: str, path: str) -> Gate | None:
        """The gate for ``method`` on ``path`` (a route template, or a literal path without a
        router)."""
        m = priced_method(method)
        exact = self.exact
        if exact:
            g = exact.get((m, path)) or exact.get((None, path))
            if g is not None:
                return g
        for km, prefix, gate in self.prefixes:
            if (km is None or km == m) and path.startswith(prefix):
                return gate
        return None

    def unmatched(self, routes: Iterable[tuple[str, frozenset[str] | None]]) -> list[str]:
        """The keys that name none of ``routes`` ((template, methods or None for any))."""
        routes = [(template_form(t), ms) for t, ms in routes]
        out = []
        for method, path, prefix, key in self.labels:
            found = False
            for t, ms in routes:
                if (t.startswith(path) if prefix else t == path) and (
                    method is None or ms is None or method in ms
                ):
                    found = True
                    break
            if not found:
                out.append(key)
        return out


def build_table(provider: Any, routes: Mapping[str, Any]) -> RouteTable:
    return RouteTable((key, Gate(provider, provider._as_route(spec), key)) for key, spec in routes.items())


def config_message(unmatched: list[str], declared: Iterable[str]) -> str:
    shown = sorted(set(declared))
    more = "" if len(shown) <= 40 else f" … ({len(shown) - 40} more)"
    return (
        f"paywall route keys {unmatched} name no route of the app; a key names a declared route "
        f"by its template (routes: {', '.join(shown[:40])}{more})"
    )
