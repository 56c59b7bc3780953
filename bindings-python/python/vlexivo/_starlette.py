"""Which route a Starlette or FastAPI router runs for a request, asked of the routes themselves.

The router's own rule is followed: its routes' ``matches()`` in order, the first full match wins,
a mount hands the rest of the path to its own routes; a partial match (405), a slash redirect or
a 404 runs no handler. FastAPI's included routers are matched with ``matches()`` too, then read
through ``fastapi.routing.iter_route_contexts`` (their routes with the include prefixes).
The route the router finally ran is checked against this answer when the response starts
(``scope["route"]``), so that a disagreement can never serve paid content unpaid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# Starlette's own reading of the path its routes match (root_path removed), as its routing uses it.
from starlette.routing import (  # type: ignore[attr-defined]
    BaseRoute,
    Host,
    Match,
    Mount,
    Router,
    compile_path,
    get_route_path,
)

_iter_contexts: Callable[[list[Any]], Iterator[Any]] | None
try:
    from fastapi.routing import iter_route_contexts as _iter_contexts
except ImportError:  # FastAPI absent, or older (its included routes were already flat)
    _iter_contexts = None


Mounts = tuple[tuple[Any, int], ...]
# Route classes whose match depends only on the method and the path (Starlette's and FastAPI's
# own; exact classes: a subclass may match otherwise).
_PATH_ONLY = frozenset(
    f"{m}.{n}"
    for m, names in (
        ("starlette.routing", ("Route", "Mount", "WebSocketRoute")),
        ("fastapi.routing", ("APIRoute", "APIWebSocketRoute", "_IncludedRouter")),
    )
    for n in names
)


class Leaf:
    """A route that runs a handler, with its full template (mount and include prefixes added)."""

    __slots__ = ("cache", "dependant", "methods", "mounts", "route", "template")

    def __init__(
        self, route: Any, template: str, methods: frozenset[str] | None, dependant: Any, mounts: Mounts
    ) -> None:
        self.route = route
        self.template = template
        self.methods = methods
        self.dependant = dependant
        # The mounts on the way, each with the length of the template up to it: the mounted
        # app's own paywall middlewares price ``template[cut:]``.
        self.mounts = mounts
        # method -> the gates of every paywall on this route (filled by the middleware).
        self.cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Leaf({self.template!r}, {sorted(self.methods or ['*'])})"


def _methods(route: Any) -> frozenset[str] | None:
    ms = getattr(route, "methods", None)
    return frozenset(ms) if ms else None


def _prefix_of(mount: Any) -> str:
    # "/users/{uid}/{path}" -> "/users/{uid}"
    fmt: str = mount.path_format
    return fmt[: -len("/{path}")] if fmt.endswith("/{path}") else fmt


class RouterMap:
    """The routes of one router, resolved per request."""

    def __init__(self, router: Any) -> None:
        self.router = router
        # Leaf objects are kept per (route, template) so their per-method cache survives.
        self._leaves: dict[tuple[int, str], Leaf] = {}
        self._compiled: dict[str, Any] = {}
        # Read on every request by the middleware's ``_cache_current`` (the native rule for its
        # route cache, which calls nothing while the router's route count is ``size``): whether
        # every route matches on the path alone.
        self.path_only = False
        self.size = -1
        self.generation = 0

    # --- one request ---------------------------------------------------------------------

    def cacheable(self) -> bool:
        """Whether the route for a request depends only on its method, root path and path
        (every route is one of the framework's own path-matching kinds), so that a caller may
        remember it per (method, root_path, path) until :attr:`generation` changes."""
        if len(self.router.routes) != self.size:
            self._survey()
        return self.path_only

    def resolve(self, scope: dict[str, Any]) -> Leaf | None:
        """The route whose handler the router will run for ``scope``, or None (no route, a 405,
        a redirect)."""
        return self._select(self.router.routes, scope, "", ())

    def _survey(self) -> None:
        """Whether every route is one of the framework's own path-matching kinds (else a route
        may look at headers, and nothing is cached)."""
        self.size = len(self.router.routes)
        self.generation += 1
        self.path_only = True
        for _ in self.leaves():
            pass

    def _select(self, routes: list[Any], scope: dict[str, Any], prefix: str, mounts: Mounts) -> Leaf | None:
        path = get_route_path(scope)
        for route in routes:
            # A route or mount whose path pattern does not match answers NONE in matches() (its
            # first test); skipping it here saves building its child scope.
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(path) is None:
                continue
            match, child = route.matches(scope)
            if match is Match.FULL:
                return self._descend(route, scope, child, prefix, mounts)
            # A partial match only answers 405 (unless a later route matches fully).
        return None

    def _descend(
        self, route: Any, scope: dict[str, Any], child: dict[str, Any], prefix: str, mounts: Mounts
    ) -> Leaf | None:
        if isinstance(route, (Mount, Host)):
            inner = route.routes
            if isinstance(route, Mount):
                prefix = prefix + _prefix_of(route)
            mounts = (*mounts, (route, len(prefix)))
            if not inner:  # a mounted app without a router: the mount is the route
                return self._leaf(route, prefix + "/{path}", None, None, mounts)
            return self._select(inner, {**scope, **child}, prefix, mounts)
        if _iter_contexts is not None and not hasattr(route, "path_format"):
            return self._included(route, scope, prefix, mounts)
        return self._leaf(
            route, prefix + route.path_format, _methods(route), getattr(route, "dependant", None), mounts
        )

    def _included(self, included: Any, scope: dict[str, Any], prefix: str, mounts: Mounts) -> Leaf | None:
        """A FastAPI included router that matched: its first fully matching route."""
        assert _iter_contexts is not None
        path = get_route_path(scope)
        method = scope["method"]
        for ctx in _iter_contexts([included]):
            route = ctx.original_route
            full: str = ctx.path or ""
            fmt: str = ctx.path_format or ""
            if isinstance(route, Mount):
                if self._regex(full.rstrip("/") + "/{path:path}").match(path):
                    return self._leaf(route, prefix + fmt.rstrip("/") + "/{path}", None, None, mounts)
                continue
            if self._regex(full).match(path):
                methods = _methods(route)
                if methods is None or method in methods:
                    return self._leaf(route, prefix + fmt, methods, _context_dependant(ctx), mounts)
        return None

    def _regex(self, path: str) -> Any:
        r = self._compiled.get(path)
        if r is None:
            r = self._compiled[path] = compile_path(path)[0]
        return r

    def _leaf(
        self, route: Any, template: str, methods: frozenset[str] | None, dependant: Any, mounts: Mounts
    ) -> Leaf:
        key = (id(route), template)
        leaf = self._leaves.get(key)
        if leaf is None or leaf.route is not route:
            leaf = self._leaves[key] = Leaf(route, template, methods, dependant, mounts)
        return leaf

    # --- every route (to check a table's keys) -----------------------------------------------

    def leaves(self) -> Iterator[Leaf]:
        yield from self._walk(self.router.routes, "", ())

    def _walk(self, routes: list[Any], prefix: str, mounts: Mounts) -> Iterator[Leaf]:
        for route in routes:
            if f"{type(route).__module__}.{type(route).__qualname__}" not in _PATH_ONLY:
                self.path_only = False
            if isinstance(route, (Mount, Host)):
                p = prefix + _prefix_of(route) if isinstance(route, Mount) else prefix
                ms = (*mounts, (route, len(p)))
                inner = route.routes
                if inner:
                    yield from self._walk(inner, p, ms)
                else:
                    yield self._leaf(route, p + "/{path}", None, None, ms)
            elif hasattr(route, "path_format"):
                yield self._leaf(
                    route,
                    prefix + route.path_format,
                    _methods(route),
                    getattr(route, "dependant", None),
                    mounts,
                )
            elif _iter_contexts is not None and isinstance(route, BaseRoute):
                for ctx in _iter_contexts([route]):
                    r = ctx.original_route
                    fmt = ctx.path_format or ""
                    if isinstance(r, Mount):
                        yield self._leaf(r, prefix + fmt.rstrip("/") + "/{path}", None, None, mounts)
                    else:
                        yield self._leaf(r, prefix + fmt, _methods(r), _context_dependant(ctx), mounts)

    def leaf_of(self, route: Any) -> list[Leaf]:
        """Every leaf (one per template) of a route object the router ran."""
        found = [leaf for leaf in self._leaves.values() if leaf.route is route]
        if not found:
            found = [leaf for leaf in self.leaves() if leaf.route is route]
        return found


def _context_dependant(ctx: Any) -> Any:
    """The dependant of an included FastAPI route, include-level dependencies included (kept by
    FastAPI on the route's effective context), else the route's own."""
    inner = getattr(ctx, "_route_context", None)
    dep = getattr(inner, "dependant", None)
    return dep if dep is not None else getattr(ctx.original_route, "dependant", None)


def find_router(app: Any) -> Any:
    """The router of the Starlette/FastAPI app a middleware wraps: the app itself, or the end of
    the chain of middlewares (each holding the next as ``.app``) that Starlette builds."""
    node = app
    for _ in range(64):
        if isinstance(node, Router):
            return node
        router = getattr(node, "router", None)
        if isinstance(router, Router):
            return router
        node = getattr(node, "app", None)
        if node is None:
            return None
    return None


def chain(app: Any) -> Iterator[Any]:
    """The ASGI apps a request passes through below ``app`` down to the router: each middleware's
    ``.app``, a Starlette app's middleware stack (built as Starlette builds it on its first
    request)."""
    node = app
    for _ in range(64):
        if node is None or isinstance(node, Router):
            return
        yield node
        if hasattr(node, "build_middleware_stack"):
            if node.middleware_stack is None:
                node.middleware_stack = node.build_middleware_stack()
            node = node.middleware_stack
        else:
            node = getattr(node, "app", None)


def guards_of(dependant: Any, is_guard: Callable[[Any], bool]) -> list[Any]:
    """The paywall guards among a FastAPI route's dependencies (depth first, outermost first)."""
    out: list[Any] = []
    if dependant is None:
        return out
    stack = [dependant]
    seen: set[int] = set()
    while stack:
        d = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        call = getattr(d, "call", None)
        if call is not None and is_guard(call) and call not in out:
            out.append(call)
        stack.extend(reversed(getattr(d, "dependencies", None) or []))
    return out
