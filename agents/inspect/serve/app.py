"""The web application: GET routes only (any other method is answered 405), each page with its
JSON under /api/, a token checked on every request when one is set, and headers that let a page
run no script but its own.

    /                  overview          /api/overview
    /records?...       records table     /api/records?...      (status, lang, reason, q, sort, desc, page, per)
    /records/KEY       one record        /api/records/KEY

The store is read in Starlette's thread pool (the handlers are plain functions): a slow query
holds one thread, never the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from agents.config import Prices
from agents.inspect.serve import assets, data
from agents.inspect.serve.html import esc, layout
from agents.inspect.serve.pages import overview_page, overview_view, records_page
from agents.inspect.serve.record_page import record_page
from scorer.listen import same_secret
from store import Store, StoreError, shown

COOKIE = "reer_token"
HEADERS = {  # the pages' own script and style only; no frame, no referrer to leak a URL
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Served:
    """What the application serves: the run ``run_id`` of ``store`` (opened read-only)."""

    store: Store
    run_id: int
    db: str
    token: str | None = None
    prices: Prices | None = None
    refresh_s: float = 5.0


class _Guard(BaseHTTPMiddleware):
    """With a token: a request carries it as ``Authorization: Bearer``, as the cookie a first
    visit with ``?token=`` sets (then redirected to the URL without it), or is refused 401."""

    def __init__(self, app, token: str | None):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next) -> Response:
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and same_secret(given, self.token):
                params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                url = request.url.replace(query=urlencode(params))
                out: Response = RedirectResponse(str(url), status_code=303)
                out.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return _headed(out)
            bearer = request.headers.get("authorization", "")
            if not (same_secret(bearer, f"Bearer {self.token}") or
                    same_secret(request.cookies.get(COOKIE, ""), self.token)):
                return _headed(PlainTextResponse("a token is required: open this address with ?token=TOKEN, "
                                                 "or send Authorization: Bearer TOKEN", status_code=401))
        return _headed(await call_next(request))


def _headed(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def make_app(served: Served) -> Starlette:
    s = served

    def guarded(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            try:
                return fn(request)
            except data.BadQuery as exc:
                return _error(request, 400, str(exc))
            except StoreError as exc:
                return _error(request, 503, f"the store cannot be read now: {exc}")
        return handler

    def _error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return HTMLResponse(layout("error", f"<h1>{status}</h1><p class='error'>{esc(message)}</p>", shown(s.db)),
                            status_code=status)

    def overview(api: bool):
        def handler(request: Request) -> Response:
            snap = data.overview(s.store, s.run_id, s.prices)
            if api:
                return JSONResponse({**snap, **overview_view(snap)})
            return HTMLResponse(overview_page(snap, shown(s.db), s.refresh_s))
        return guarded(handler)

    def records(api: bool):
        def handler(request: Request) -> Response:
            q = data.record_query(dict(request.query_params))
            page = data.records(s.store, s.run_id, q)
            if api:
                return JSONResponse(page)
            return HTMLResponse(records_page(page, shown(s.db), s.store.languages(s.run_id)))
        return guarded(handler)

    def record(api: bool):
        def handler(request: Request) -> Response:
            key = request.path_params["key"]
            found = data.record(s.store, s.run_id, key)
            if found is None:
                return _error(request, 404, f"run {s.run_id} holds no record {key!r}")
            return JSONResponse(found) if api else HTMLResponse(record_page(found, shown(s.db)))
        return guarded(handler)

    def static(text: str, kind: str):
        return lambda request: Response(text, media_type=kind)

    routes = [Route("/", overview(False)), Route("/api/overview", overview(True)),
              Route("/records", records(False)), Route("/api/records", records(True)),
              Route("/records/{key:path}", record(False)), Route("/api/records/{key:path}", record(True)),
              Route("/static/app.css", static(assets.CSS, "text/css")),
              Route("/static/app.js", static(assets.JS, "text/javascript"))]
    return Starlette(routes=routes, middleware=[Middleware(_Guard, token=s.token)])
