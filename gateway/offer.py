"""The offer a client posts: a small value object that validates itself."""
from __future__ import annotations

from dataclasses import dataclass

MAX_SDP_BYTES = 64 * 1024


class OfferError(ValueError):
    status = 400  # the HTTP status a refusal of this kind is answered with


@dataclass(frozen=True)
class Offer:
    sdp: str
    type: str = "offer"

    def __post_init__(self) -> None:
        if self.type != "offer":
            raise OfferError(f"type must be 'offer', got {self.type!r}")
        if not isinstance(self.sdp, str) or not self.sdp.strip():
            raise OfferError("sdp must be a non-empty string")
        if len(self.sdp.encode()) > MAX_SDP_BYTES:
            raise OfferError(f"sdp is larger than {MAX_SDP_BYTES} bytes")
        if not self.sdp.startswith("v=0"):
            raise OfferError("sdp does not start with 'v=0': not a session description")
        if "m=video" not in self.sdp and "m=application" not in self.sdp:
            raise OfferError("the offer has neither a video track nor a data channel")

    @classmethod
    def from_json(cls, body) -> "Offer":
        if not isinstance(body, dict):
            raise OfferError("the body must be a JSON object with 'sdp' and 'type'")
        unknown = set(body) - {"sdp", "type"}
        if unknown:
            raise OfferError(f"unknown fields {sorted(unknown)}")
        if "sdp" not in body:
            raise OfferError("missing field 'sdp'")
        return cls(body["sdp"], body.get("type", "offer"))
