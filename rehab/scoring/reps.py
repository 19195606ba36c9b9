"""Repetitions counted from the phase the scorer tracks (the thresholds and how they were chosen:
docs/scoring.md)."""
from __future__ import annotations


class RepCounter:
    """Counts repetitions from the phase reached: armed once the movement passes its middle, counted
    near its end. Hysteresis means jitter around a threshold never counts twice, and half a movement
    never counts. A forward jump over the middle (frames dropped, a processor restarted) still arms."""

    MAX_JUMP = 0.75  # a forward phase step larger than this is a different position, not progress
    MAX_MIDDLE_JUMP = 0.65  # ... and one larger than this does not pass the middle: on a cyclic phase a
    # step of 0.7 is as much 0.3 backwards (walking past the camera counted a repetition by one such step)

    def __init__(self, arm: tuple[float, float] = (0.35, 0.65), done: float = 0.75, min_similarity: float = 0.55,
                 min_mean: float = 0.6, min_reach: float = 0.6):
        self.arm, self.done, self.min_similarity, self.min_mean = arm, done, min_similarity, min_mean
        self.min_reach = min_reach
        self.count = 0
        self.armed = False
        self.prev_phase: float | None = None
        self.sim_sum, self.sim_n = 0.0, 0  # since the last count: a poor movement overall never counts
        self.reach = 0.0  # since the last count, the furthest the patient's range reached the guide's

    def _counted(self) -> None:
        if self.sim_n and self.sim_sum / self.sim_n >= self.min_mean and self.reach >= self.min_reach:
            self.count += 1
        self.armed = False
        self.sim_sum, self.sim_n = 0.0, 0
        self.reach = 0.0

    def update(self, phase: float, similarity: float, reach: float = 1.0) -> int:
        """``reach``: how far the patient's range of motion reaches the guide's now (``FormResult.reach``):
        a movement at half the guide's amplitude follows its phase, but is not a repetition."""
        self.sim_sum += similarity
        self.sim_n += 1
        self.reach = max(self.reach, reach)
        if similarity < self.min_similarity:
            return self.count
        prev, self.prev_phase = self.prev_phase, phase
        step = None if prev is None else (phase - prev) % 1.0
        forward = step is not None and step < self.MAX_JUMP
        over_middle = forward and step <= self.MAX_MIDDLE_JUMP and prev < 0.5 <= prev + step
        over_end = forward and prev + step >= 1.0  # wrapped past the end into the next repetition
        if (self.armed or over_middle) and (phase >= self.done or over_end):
            self._counted()  # (over_middle: the middle and the end in one step)
        elif self.arm[0] <= phase <= self.arm[1] or over_middle:
            self.armed = True
        return self.count
