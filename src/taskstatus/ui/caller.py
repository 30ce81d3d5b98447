"""Who is asking, for a dashboard request: the session's caller as a `Viewer`, or the way to
the sign-in page."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskstatus.api.deps import ApiState, app_state
from taskstatus.api.errors import ApiError
from taskstatus.ui import session
from taskstatus.ui.gateway import Viewer

__all__ = ["SignedIn", "signed_in", "to_login"]


class SignedIn:
    """A request's session and the service as its caller may use it."""

    def __init__(self, state: ApiState, current: session.Session) -> None:
        self.session = current
        self.viewer = Viewer(state, current.caller)

    @property
    def csrf(self) -> str:
        return self.session.csrf


async def signed_in(request: Request) -> SignedIn | None:
    state = app_state(request)
    current = await session.read(request, state)
    return None if current is None else SignedIn(state, current)


def to_login(request: Request) -> Response:
    """Where a request without a session goes: the sign-in page (coming back here after), or
    a 401 for htmx and event-stream requests, which cannot follow a redirect to a form."""
    if request.headers.get("hx-request") or request.url.path.startswith("/ui/live"):
        raise ApiError(401, ["sign in at /ui/login"])
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


async def check_action(request: Request, who: SignedIn) -> dict[str, str]:
    """The POSTed form, once its CSRF token checks out (else 403)."""
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    sent = fields.get(session.CSRF_FIELD) or request.headers.get(session.CSRF_HEADER)
    session.check_csrf(who.session, sent)
    return fields
