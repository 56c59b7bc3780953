"""Apps for bench_load.py --framework django: the same async Django view under Django's ASGI
handler, bare and behind the Vlexivo Django middleware (one process serves one of them)."""

from __future__ import annotations

import os

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped]  # noqa: E402
from django.http import JsonResponse  # type: ignore[import-untyped]  # noqa: E402
from django.urls import path  # type: ignore[import-untyped]  # noqa: E402
from vlexivo import VlexivoServer  # noqa: E402

# The load generator presents tokens bound to this origin (the port is random).
vlx = VlexivoServer(
    api_secret=os.environ.get("VLX_SECRET_KEY", "sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM"),
    origin="http://api.test",
)
Paywall = vlx.django_middleware({"GET /hello": vlx.price("0.001")})


async def hello(request: object) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("hello", hello)]

# Each handler reads MIDDLEWARE when it is built.
bare = ASGIHandler()
settings.MIDDLEWARE = [f"{__name__}.Paywall"]
paid = ASGIHandler()
