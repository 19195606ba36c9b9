"""Pure, deterministic scoring (numpy only), shared by the live processor and the offline CLI."""
from rehab.scoring.live import LiveScorer, RepCounter, replay_scores, score_attempt, summarize
from rehab.scoring.scorer import SCORER_VERSION, ReferenceModel, WindowResult

__all__ = ["SCORER_VERSION", "LiveScorer", "ReferenceModel", "RepCounter", "WindowResult", "replay_scores",
           "score_attempt", "summarize"]
