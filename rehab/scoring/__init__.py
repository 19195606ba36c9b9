"""Pure, deterministic scoring (numpy, the inner loops compiled by numba: kernels.py), shared by the live
processor and the offline CLI."""
from rehab.scoring.live import LiveScorer, WindowJob, score_jobs
from rehab.scoring.offline import replay_scores, score_attempt, summarize, verdict
from rehab.scoring.reps import RepCounter
from rehab.scoring.model import ReferenceModel
from rehab.scoring.scorer import SCORER_VERSION, WindowResult

__all__ = ["SCORER_VERSION", "LiveScorer", "ReferenceModel", "RepCounter", "WindowResult", "WindowJob", "replay_scores",
           "score_attempt", "score_jobs", "summarize", "verdict"]
