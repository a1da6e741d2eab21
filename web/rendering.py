"""Pages rendered where they are made: in the handler's worker thread, not on the event loop.

Litestar renders a :class:`~litestar.response.Template` when it turns the handler's answer
into an ASGI response, and that happens on the event loop even for a sync handler run in a
worker thread. A dashboard page with every widget and its SVG chart took tens of
milliseconds of Python there, and every tracker request (answered on the same loop) waited
behind it: py-spy found template rendering to be a quarter of the loop's own work while two
clients read the dashboard (``scripts/bench_paced --profile``). :class:`RenderedTemplate` is
a ``Template`` (so handlers keep their return type) whose body is rendered when it is
constructed, with the same context Litestar gives a template (``request``, ``csrf_input``);
turning it into a response only copies bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from litestar import MediaType, Request
from litestar.datastructures import Cookie
from litestar.response import Template
from litestar.response.base import ASGIResponse


class RenderedTemplate(Template):
    """A template response rendered at construction; call it from a sync handler."""

    def __init__(self, request: Request, template_name: str, context: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("media_type", MediaType.HTML)
        super().__init__(template_name=template_name, context=context, **kwargs)
        template = request.app.template_engine.get_template(template_name)
        self.rendered = template.render(**self.create_template_context(request)).encode(self.encoding)

    def to_asgi_response(
        self,
        app: Any,
        request: Request,
        *,
        background: Any = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: Any = None,
    ) -> ASGIResponse:
        # Template.to_asgi_response without the rendering: the same headers, cookies and status.
        return ASGIResponse(
            background=self.background or background,
            body=self.rendered,
            content_length=None,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers={**headers, **self.headers} if headers is not None else self.headers,
            is_head_response=is_head_response,
            media_type=self.media_type or media_type,
            status_code=self.status_code or status_code,
        )
