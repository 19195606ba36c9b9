"""The gateway (Starlette + aiortc): WebRTC ingest, REST, score push over WebSocket."""
