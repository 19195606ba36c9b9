"""Pure, deterministic scoring (numpy only), shared by the live processor and the offline CLI."""
from rehab.scoring.scorer import SCORER_VERSION, LiveScorer, ReferenceModel, WindowResult, score_attempt

__all__ = ["SCORER_VERSION", "LiveScorer", "ReferenceModel", "WindowResult", "score_attempt"]
