"""irbook's HTTP receiver (`irbook serve`): an ASGI app under uvicorn.

For now it serves Slack's interactivity callbacks (approval buttons) and a health check;
the SIEM webhooks (`POST /hooks/{source}`) join it in the webhook work. Starlette is
imported when the app is built, so the core package stays light.
"""

from __future__ import annotations

from typing import Any

from irbook.triggers.slack import SlackInteractions

MAX_BODY = 1024 * 1024


def create_app(*, slack: SlackInteractions | None = None, max_body: int = MAX_BODY) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body:
                return None
        return bytes(body)

    async def slack_interactions(request: Request) -> JSONResponse:
        if slack is None:
            return JSONResponse({"error": "Slack approvals are not configured"}, status_code=404)
        body = await read_body(request)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        answer = await run_in_threadpool(slack.handle, dict(request.headers), body)
        return JSONResponse(answer.body, status_code=answer.status)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/slack/interactions", slack_interactions, methods=["POST"]),
        ]
    )
