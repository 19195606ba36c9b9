"""HTTP plumbing the gateway's routes share: error replies and bounded JSON bodies."""
from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.offer import OfferError
from gateway.uploads import limited_chunks

MAX_BODY = 256 * 1024
MAX_JSON_DEPTH = 32


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class NotFound(LookupError):
    """What the route names does not exist (or the caller may not learn that it does): a 404 that the
    app's refusal handler answers, so routes raise it instead of each catching and replying."""

    status = 404


class BodyTooLarge(OfferError):
    """A JSON body over ``MAX_BODY``: found while reading (never read whole first)."""

    status = 413


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (uploads.limited_chunks)."""
    return b"".join([chunk async for chunk in limited_chunks(request, limit, BodyTooLarge, "request body")])


def json_depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether no array/object nests deeper than ``limit`` (counted on the bytes, outside strings,
    before parsing: Python's json recursion on ``[[[[...`` costs time and can raise RecursionError)."""
    depth, in_str, escaped = 0, False, False
    for b in raw:
        if in_str:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


async def read_json(request: Request):
    body = await read_body(request)
    if not json_depth_ok(body):
        raise OfferError(f"body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfferError(f"body is not JSON: {exc}") from None


