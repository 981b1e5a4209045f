"""A minimal Django project served through Django's own WSGI handler."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="asgiri-tests",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,  # the large-upload test posts 5 MiB
)

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs the settings)
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402


def hello(request: HttpRequest) -> HttpResponse:
    name = request.GET.get("name", "world")
    return HttpResponse(f"hello {name} over {request.META['SERVER_PROTOCOL']}")


def upload(request: HttpRequest) -> JsonResponse:
    body = request.body
    return JsonResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    parts = int(request.GET.get("parts", "10"))

    def lines() -> Iterator[bytes]:
        for i in range(parts):
            yield f"part {i}\n".encode()

    return StreamingHttpResponse(lines(), content_type="text/plain")


urlpatterns = [path("hello", hello), path("upload", upload), path("stream", stream)]

application = get_wsgi_application()
