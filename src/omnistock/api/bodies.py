"""Strict request bodies.

Litestar converts a JSON body to the handler's type leniently (``"2"`` becomes ``2``). The
contract wants wrong types refused, so handlers take the body as Litestar decoded it (which keeps
it in the OpenAPI document) and decode the same bytes again, strictly, with msgspec.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request

from omnistock.api.problems import invalid, strict_field

T = TypeVar("T")

_decoders: dict[type, msgspec.json.Decoder] = {}


async def strict(request: Request, type_: type[T]) -> T:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(await request.body())
    except msgspec.ValidationError as exc:
        field = strict_field(exc) or "body"
        raise invalid(field, str(exc).split(" - at ", 1)[0]) from None
    except msgspec.DecodeError as exc:
        raise invalid("body", f"malformed JSON: {exc}", 400) from None
    except RecursionError:
        raise invalid("body", "malformed JSON: nested too deeply", 400) from None
    except UnicodeDecodeError:
        raise invalid("body", "malformed JSON: not valid UTF-8", 400) from None
