"""Reading a request body once, with a cap, before anything is parsed or verified."""

from __future__ import annotations

from starlette.requests import Request


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The raw body, read once; None when it is (or says it is) larger than `limit`."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
