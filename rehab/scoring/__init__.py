"""Pure, deterministic scoring (numpy, the inner loops compiled by numba: kernels.py), shared by the live
processor and the offline CLI."""
from rehab.scoring.live import LiveScorer, RepCounter, WindowJob, replay_scores, score_attempt, score_jobs, summarize
from rehab.scoring.scorer import SCORER_VERSION, ReferenceModel, WindowResult

__all__ = ["SCORER_VERSION", "LiveScorer", "ReferenceModel", "RepCounter", "WindowResult", "WindowJob", "replay_scores",
           "score_attempt", "score_jobs", "summarize"]
