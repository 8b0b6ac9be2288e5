"""Who may see the UI: a bearer token, or the session cookie its login form sets.

With `POSTEE_UI_TOKEN` set, every page and API call needs `Authorization: Bearer <token>`
or the cookie; anything else is answered 401 (pages with the login form). The cookie holds
an HMAC of the token, never the token itself: HttpOnly, SameSite=Strict, Secure over TLS.
A state-changing call whose Origin names another site is refused (403), a second wall
beside SameSite. Without a token the UI is open, which `postee ui` allows on loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from streams.settings import UiSettings

__all__ = ["COOKIE", "TOKEN_KEY", "configure", "middleware", "routes", "session_value"]

COOKIE = "postee_ui_session"
TOKEN_KEY = web.AppKey("token", str)
TLS_KEY = web.AppKey("tls", bool)
#: Paths anyone may fetch: the login form, its assets, and readiness (no data in them).
OPEN_PATHS = frozenset({"/login", "/healthz", "/favicon.ico", "/static/app.css", "/static/app.js"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LoginPage = Callable[[str, str], str]


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"postee-ui-session-v1", hashlib.sha256).hexdigest()


def authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(given.strip().encode(), token.encode())
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def middleware(login_page: LoginPage) -> Middleware:
    @web.middleware
    async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.app.get(TOKEN_KEY)
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return web.json_response({"error": "cross-site request refused"}, status=403)
        if token is None or request.path in OPEN_PATHS or authorized(request, token):
            return await handler(request)
        if request.path.startswith("/api/"):
            return web.json_response(
                {"error": "missing or wrong credentials"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="postee-ui"'},
            )
        return _page(login_page(request.path_qs, ""), 401)

    return require_auth


def routes(login_page: LoginPage) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.Response:
        return _page(login_page(_next(request.query.get("next", "/")), ""), 200)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        token, given = request.app.get(TOKEN_KEY), str(form.get("token", ""))
        target = _next(str(form.get("next", "/")))
        if token is None:
            raise web.HTTPSeeOther(target)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _page(login_page(target, "That is not the secret."), 401)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="Strict",
            secure=request.app[TLS_KEY],
            path="/",
        )
        raise response

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    return [web.get("/login", show), web.post("/login", login), web.post("/logout", logout)]


def configure(app: web.Application, settings: UiSettings) -> None:
    if settings.token is not None:
        app[TOKEN_KEY] = settings.token
    app[TLS_KEY] = settings.tls_cert is not None


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser's cross-site request (curl, a script with the token)
        return True
    return origin.partition("://")[2] == request.host


def _next(target: str) -> str:
    """Only a path on this site: `//evil.example` or a URL must not be a redirect target."""
    safe = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if safe else "/"


def _page(html: str, status: int) -> web.Response:
    return web.Response(text=html, status=status, content_type="text/html")
