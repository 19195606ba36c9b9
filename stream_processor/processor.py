"""What the processor does with one keypoint message, independent of Faust (so tests can drive it).

Decodes the message (malformed ones go to the dead-letter topic), finds the session's scorer
(building it from the reference stored in MySQL on first sight), and returns the Score, if any.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rehab.records import KeypointFrame, MessageError, Score
from rehab.reference import Reference
from rehab.scoring import LiveScorer, ReferenceModel

log = logging.getLogger("rehab.stream_processor")


class UnusableMessage(Exception):
    """The message is well-formed but cannot be scored (e.g. its reference is unknown)."""


@dataclass
class ScoringState:
    """Scorers per session and references by id. ``load_reference`` is an async callable (the DB)."""

    load_reference: object
    window_ms: int = 1000
    scorers: dict[str, LiveScorer] = field(default_factory=dict)
    models: dict[str, ReferenceModel] = field(default_factory=dict)

    async def _model(self, reference_id: str) -> ReferenceModel:
        model = self.models.get(reference_id)
        if model is None:
            ref: Reference | None = await self.load_reference(reference_id)
            if ref is None:
                raise UnusableMessage(f"unknown reference {reference_id!r}")
            model = self.models[reference_id] = ReferenceModel.build(ref)
        return model

    async def handle(self, raw: bytes) -> Score | None:
        """Raises MessageError / UnusableMessage for the dead-letter topic."""
        frame = KeypointFrame.from_json(raw)
        scorer = self.scorers.get(frame.session_id)
        if scorer is None:
            if frame.reference_id is None:
                raise UnusableMessage("keypoint frame names no reference_id")
            scorer = LiveScorer(await self._model(frame.reference_id), frame.session_id, window_ms=self.window_ms)
            self.scorers[frame.session_id] = scorer
        return scorer.update(frame)


__all__ = ["MessageError", "ScoringState", "UnusableMessage"]
