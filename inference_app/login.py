"""`/login`: the form where a browser user enters the API key to open the chat UI.

On success it sets the session cookie described in `auth.py` and redirects to the UI."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inference_app.auth import SESSION_COOKIE, KeyChecker

UI_PATH = "/ui/"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aca-infer: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.4rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>Chat with the model</h1>
<p>Enter an API key of this endpoint (primary or secondary).</p>
<form method="post" action="/login">
<input type="password" id="api-key" name="key" placeholder="API key" autocomplete="off" required>
<input type="hidden" name="next" value="{next}">
<button type="submit" id="sign-in">Open chat</button></form>
<p class="error">{error}</p></body></html>"""

router = APIRouter(include_in_schema=False)


def _safe_next(value: str | None) -> str:
    # Only same-site paths: never redirect a user to another host after sign-in.
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return UI_PATH


def _page(next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(next=html.escape(_safe_next(next_path)), error=html.escape(error)),
        status_code=status,
    )


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _page(request.query_params.get("next", UI_PATH))


@router.post("/login")
async def login(request: Request) -> Response:
    checker: KeyChecker = request.app.state.key_checker
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    next_path = _safe_next((form.get("next") or [UI_PATH])[0])
    token = checker.session_token(key) if key else None
    if token is None:
        return _page(next_path, "That key is not valid for this endpoint.", status=401)
    response = RedirectResponse(next_path, status_code=303)
    forwarded = request.headers.get("x-forwarded-proto", request.url.scheme)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=forwarded == "https",
        path="/",
    )
    return response
