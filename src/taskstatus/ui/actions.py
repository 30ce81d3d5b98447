"""The dashboard's actions (POST): sign in and out, cancel, clear, delete, retry, bulk
actions and submit. Each needs the session's CSRF token and the tasks:write scope (checked by
`Viewer`, as the API checks it), and answers with a redirect (303) to a page that says what
happened, so that the browser's back and reload buttons never repeat an action."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from taskstatus.api.deps import app_state, source_address
from taskstatus.api.errors import ApiError
from taskstatus.errors import HasSubtasks, InvalidArguments, NotFound
from taskstatus.model import CompletionStatus
from taskstatus.ui import forms, session
from taskstatus.ui.caller import SignedIn, check_action, signed_in, to_login
from taskstatus.ui.gateway import BULK_LIMIT
from taskstatus.ui.listing import ListQuery
from taskstatus.ui.pages import base_context, error_text, submit_form
from taskstatus.ui.render import page

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


def _back(path: str, **message: str) -> Response:
    query = urlencode({k: v for k, v in message.items() if v})
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


def _safe_next(target: str) -> str:
    """Only a path of the dashboard: never an open redirect to another site."""
    return target if target.startswith("/ui") and not target.startswith("//") else "/ui"


@router.post("/login")
async def login(request: Request) -> Response:
    state = app_state(request)
    form = await request.form()
    client_id = str(form.get("client_id") or "")
    secret = str(form.get("client_secret") or "")
    target = _safe_next(str(form.get("next") or "/ui"))
    address = source_address(request)
    state.auth_failures.check(client_id, address)  # 429 after too many failures
    client = await state.auth.authenticate_client(client_id, secret)
    if client is None:
        state.auth_failures.failed(client_id, address)
        return page(
            request,
            "login.html",
            base_context(request, None, title="Sign in", next=target, failed=client_id or " "),
            status_code=401,
        )
    token = state.auth.issue(client)
    response = RedirectResponse(target, status_code=303)
    session.sign_in(response, request, state, str(token["access_token"]))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = await signed_in(request)
    if who is not None:
        await check_action(request, who)
    response = RedirectResponse("/ui/login", status_code=303)
    session.sign_out(response)
    return response


async def _acting(request: Request) -> tuple[SignedIn, dict[str, str]] | Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    return who, await check_action(request, who)


@router.post("/tasks/{task_id}/{action}")
async def task_action(request: Request, task_id: str, action: str) -> Response:
    acting = await _acting(request)
    if isinstance(acting, Response):
        return acting
    who, form = acting
    viewer, here = who.viewer, f"/ui/tasks/{task_id}"
    try:
        if action == "cancel":
            task = await viewer.cancel(task_id)
            return _back(here, notice=f"Cancel requested: the task is {task.state.value}.")
        if action == "clear":
            status = CompletionStatus.__members__.get(form.get("status", ""))
            if status is None:
                return _back(here, error="choose a completion status")
            await viewer.clear(task_id, status)
            return _back(here, notice=f"Cleared as {status.value}.")
        if action == "delete":
            deleted = await viewer.delete(task_id, force=form.get("force") == "true")
            return _back("/ui/tasks", notice=f"Deleted {len(deleted)} task(s).")
        if action == "retry":
            again = await viewer.retry(task_id)
            return _back(f"/ui/tasks/{again.id}", notice=f"Submitted again as {again.id}.")
    except HasSubtasks as e:
        return _back(here, error=f"{e} (tick 'and its subtasks' to delete them too)")
    except (ApiError, NotFound):
        raise  # 403 without the write scope, 404 for a task the caller may not see
    except Exception as e:
        text = error_text(e)  # an illegal transition, say: said on the page
        if text is None:
            raise
        return _back(here, error=text)
    return _back(here, error=f"no action {action!r}")


@router.post("/bulk")
async def bulk(request: Request) -> Response:
    """Cancel or delete the ticked tasks, or every task matching the list's filter (at most
    BULK_LIMIT), once the confirmation page that says how many was confirmed."""
    acting = await _acting(request)
    if isinstance(acting, Response):
        return acting
    who, form = acting
    if not who.viewer.can_write:
        raise ApiError(403, ["this operation needs the tasks:write scope"])
    action, _, scope = form.get("do", "").partition(":")
    if action not in ("cancel", "delete"):
        return _back("/ui/tasks", error="choose cancel or delete")
    query = ListQuery.from_params(form)
    picked = [str(i) for i in (await request.form()).getlist("id")]
    if scope == "matching":
        picked = await who.viewer.ids(query.where())
    else:
        picked = [t.id for t in await who.viewer.tasks(picked)]
    back = query.url()
    if not picked:
        return RedirectResponse(
            back + ("&" if "?" in back else "?") + "error=No+tasks+chosen.", status_code=303
        )
    if form.get("confirmed") != "yes":
        return page(
            request,
            "confirm.html",
            base_context(
                request,
                who,
                title="Confirm",
                action=action,
                ids=picked,
                scope=scope,
                query=query,
                limited=len(picked) >= BULK_LIMIT,
                force=form.get("force", ""),
            ),
        )
    done, failed = 0, []
    for task_id in picked:
        try:
            if action == "cancel":
                await who.viewer.cancel(task_id)
            else:
                await who.viewer.delete(task_id, force=form.get("force") == "true")
            done += 1
        except Exception as e:
            text = error_text(e)
            if text is None:
                raise
            failed.append(text)
    verb = "Cancelled" if action == "cancel" else "Deleted"
    notice = f"{verb} {done} of {len(picked)} task(s)."
    if failed:
        notice += f" {len(failed)} refused, e.g.: {failed[0]}"
    return RedirectResponse(
        back + ("&" if "?" in back else "?") + urlencode({"notice": notice}), status_code=303
    )


@router.post("/submit")
async def submit(request: Request) -> Response:
    acting = await _acting(request)
    if isinstance(acting, Response):
        return acting
    who, form = acting
    name = form.get("handler", "")
    definitions = {d.name: d for d in await who.viewer.definitions()}
    definition = definitions.get(name)
    if definition is None:
        return _back("/ui/handlers", error=f"no handler {name!r}")
    fields = forms.fields_of(definition.schema)
    arguments, errors = forms.parse_form(fields, form)
    if not errors:
        try:
            task = await who.viewer.submit(name, arguments)
            return _back(f"/ui/tasks/{task.id}", notice="Submitted.")
        except InvalidArguments as e:
            by_field, other = forms.errors_by_field(e.errors, fields)
            return await submit_form(request, who, name, form, by_field, other, 400)
        except ApiError:
            raise
        except Exception as e:
            text = error_text(e)
            if text is None:
                raise
            return await submit_form(request, who, name, form, {}, [text], 400)
    return await submit_form(request, who, name, form, errors, [], 400)
