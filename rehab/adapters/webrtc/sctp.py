"""Delayed SACKs for aiortc's SCTP (the transport under WebRTC data channels), as RFC 4960 section 6.2
asks and browsers do: a received packet of in-order DATA is acknowledged with the next one, or within
200 ms, instead of at once. aiortc 1.16 acknowledges every packet on arrival, so each keypoint message
of an on-device session made the gateway send a SACK back (a DTLS record and a UDP send each: py-spy put
those SACKs at ~19 % of the gateway's time with 100 on-device sessions). Out-of-order or duplicate packets
are still acknowledged at once (they are how the sender learns of a loss).

It also bounds what one stream may hold in reassembly (``MAX_REASSEMBLY_BYTES``, below).

``install()`` is idempotent and process-wide; the gateway and the Python client call it.
"""
from __future__ import annotations

import asyncio

from aiortc.rtcsctptransport import RTCSctpTransport

SACK_EVERY_PACKETS = 2  # RFC 4960 6.2: "an acknowledgement SHOULD be generated for at least every second packet"
SACK_DELAY_S = 0.2  # ... "and within 200 ms of the arrival of any unacknowledged DATA chunk"

_immediate = RTCSctpTransport._send_sack


async def _flush(transport: RTCSctpTransport) -> None:
    timer = transport.__dict__.pop("_rehab_sack_timer", None)
    if timer is not None:
        timer.cancel()
    transport._rehab_unacked = 0
    await _immediate(transport)


async def _on_timer(transport: RTCSctpTransport) -> None:
    transport.__dict__.pop("_rehab_sack_timer", None)
    if transport._sack_needed and transport._association_state == RTCSctpTransport.State.ESTABLISHED:
        await _flush(transport)


async def _delayed_send_sack(transport: RTCSctpTransport) -> None:
    """Called by aiortc after each received packet that needs acknowledging."""
    if (transport._sack_duplicates or transport._sack_misordered
            or transport._association_state != RTCSctpTransport.State.ESTABLISHED):
        await _flush(transport)
        return
    unacked = getattr(transport, "_rehab_unacked", 0) + 1
    if unacked >= SACK_EVERY_PACKETS:
        await _flush(transport)
        return
    transport._rehab_unacked = unacked
    if "_rehab_sack_timer" not in transport.__dict__:
        transport._rehab_sack_timer = asyncio.get_running_loop().call_later(
            SACK_DELAY_S, lambda: asyncio.ensure_future(_on_timer(transport)))


# Inbound messages are reassembled from fragments without a bound in aiortc: a peer that keeps sending
# fragments of one message (never the last) grows the gateway's memory for as long as it likes. A
# data channel message is at most the max-message-size both sides advertise (64 KiB by default; the
# gateway's keypoint messages are at most 8 KB); more waiting in one stream's reassembly is hostile,
# and the association is aborted (the session's peer connection fails, the reaper ends it).
MAX_REASSEMBLY_BYTES = 256 * 1024

_receive_data_chunk = RTCSctpTransport._receive_data_chunk


async def _bounded_receive_data_chunk(transport: RTCSctpTransport, chunk) -> None:
    stream = transport._inbound_streams.get(chunk.stream_id)
    if stream is not None and len(chunk.user_data) + sum(len(c.user_data) for c in stream.reassembly) \
            > MAX_REASSEMBLY_BYTES:
        transport._rehab_aborted_oversized = True
        await transport.stop()
        return
    await _receive_data_chunk(transport, chunk)


def install() -> None:
    RTCSctpTransport._send_sack = _delayed_send_sack
    RTCSctpTransport._receive_data_chunk = _bounded_receive_data_chunk
