"""limbdtw-3.3.0's two additions: the session similarity weighs each window by how much of the movement
it has seen, and a window's score by how alike the body parts share the movement with the guide."""
import numpy as np
import pytest

from rehab.coco import MIRROR
from rehab.scoring import LiveScorer, ReferenceModel, replay_scores
from rehab.scoring import scorer as scorer_module
from rehab.scoring.model import PARTS, movement_steps
from rehab.scoring.pose import normalize, to_array
from rehab.scoring.scorer import _share_agreement, session_weight

from tests.unit.rehab.scoring.test_scoring import STAND, frames, pose_at, reference


def test_a_window_weighs_the_square_of_the_share_of_one_guide_length_seen():
    # a guide of 60 rows at 30 Hz is 2 s long
    assert session_weight(2000, 60) == 1.0 and session_weight(5000, 60) == 1.0
    assert session_weight(1000, 60) == pytest.approx(0.25)
    assert session_weight(500, 60) == pytest.approx(0.0625)
    assert session_weight(0, 60) == pytest.approx(0.01), "floored: the first window still counts a little"
    assert session_weight(1000, 30) == 1.0, "a shorter guide is seen whole sooner"


def test_the_session_similarity_is_the_windows_weighted_by_what_they_had_seen():
    """Recomputed from the scores the scorer gave: each window's weight from its last frame's time since
    the first window's first frame, against the guide's 2 s (60 rows at 30 fps)."""
    fs = frames([pose_at(i / 60) for i in range(150)])
    scores = replay_scores(LiveScorer(ReferenceModel.build(reference()), "s", min_interval_ms=100), fs)
    start = scores[0].window_start_ts_ms
    weights = [min(max((s.window_end_ts_ms - start) / 2000, 0.1), 1.0) ** 2 for s in scores]
    expected = sum(w * s.similarity for w, s in zip(weights, scores)) / sum(weights)
    assert scores[-1].session_similarity == pytest.approx(expected, abs=2e-4)
    assert weights[0] < 0.1 and weights[-1] == 1.0


def test_a_bad_start_weighs_less_than_a_bad_end(monkeypatch):
    """The same frames in another order: a patient who stands still for 1.5 s and then moves as the
    guide scores higher than one who moves as long and then stands still, because the first 1.5 s are a
    fraction of a repetition, the last ones come after a whole guide length. (The plain mean of the
    windows, before 3.3.0, ranked them the other way.)"""
    model = ReferenceModel.build(reference())
    still, moving = [pose_at(0.0)] * 45, [pose_at(i / 60) for i in range(120)]

    def session(poses):
        return replay_scores(LiveScorer(model, "s", min_interval_ms=100), frames(poses))[-1].session_similarity

    assert session(still + moving) > session(moving + still) + 0.05
    monkeypatch.setattr(scorer_module, "SESSION_WEIGHT_POWER", 0.0)  # every window alike
    assert session(still + moving) < session(moving + still)


def test_a_restored_scorer_keeps_the_session_similarity_and_old_snapshots_weigh_every_window_alike():
    fs = frames([pose_at(i / 60) for i in range(150)])
    model = ReferenceModel.build(reference())
    whole = replay_scores(LiveScorer(model, "s"), fs)
    first = LiveScorer(model, "s")
    replay_scores(first, fs[:70])
    resumed = LiveScorer(model, "s")
    resumed.restore(first.snapshot())
    rest = replay_scores(resumed, fs[70:])
    assert rest[-1].session_similarity == pytest.approx(whole[-1].session_similarity, abs=1e-3)
    old = {k: v for k, v in first.snapshot().items() if k not in ("weight", "seen_from_ms")}
    resumed = LiveScorer(model, "s")
    resumed.restore(old)  # (a processor's snapshot from before 3.3.0)
    assert resumed.weight == first.n_scores and resumed.total == first.total


def test_share_agreement_compares_how_the_movement_is_shared_not_how_much_there_is():
    guide = np.array([[0.0, 0.1, 0.3, 0.6, 0.0, 0.0, 0.0]])  # the arms move
    assert _share_agreement(3.0 * guide, guide)[0][0] == pytest.approx(1.0), "more of the same: no cost"
    legs = np.array([[0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 0.3]])
    assert _share_agreement(legs, guide)[0][0] == pytest.approx(0.0), "other parts entirely"
    half = np.array([[0.0, 0.1, 0.3, 0.6, 0.2, 0.5, 0.3]])  # the arms as the guide, and as much legs
    agreement, diff = _share_agreement(half, guide)
    assert agreement[0] == pytest.approx(0.5)
    assert np.argmax(diff[0]) == 5, "the knees: the largest share beyond the guide's"
    assert _share_agreement(np.zeros((1, 7)), guide)[0][0] == 1.0, "no movement is the movement factor's call"


def test_body_part_steps_are_the_same_for_a_label_swap_and_the_mirror_image():
    a = to_array([pose_at(0.2), pose_at(0.3)])
    norm, w = normalize(a)
    step, parts = movement_steps(norm[1:], w[1:], norm[:1], w[:1])
    assert parts.shape == (1, len(PARTS)) and parts[0, 3] > parts[0, 0], "the wrists move, the head does not"
    swapped = norm[1:][:, list(MIRROR)]  # this frame's left and right labels swapped against the last one
    s2, p2 = movement_steps(swapped, w[1:][:, list(MIRROR)], norm[:1], w[:1])
    np.testing.assert_allclose(p2, parts, atol=1e-12)
    assert s2 == pytest.approx(step)


def _legs(t: float) -> list:
    """Arms down, the left leg swinging once per unit of t."""
    p = np.array(STAND)
    angle = 0.5 * np.sin(np.pi * t) ** 2
    for j, length in ((13, 40.0), (15, 80.0)):
        p[j] = p[11] + length * np.array([-np.sin(angle), np.cos(angle)])
    return [[float(x), float(y), 0.95] for x, y in p]


def test_moving_the_legs_where_the_guide_moves_an_arm_costs_the_window(monkeypatch):
    """The left arm's swing is the exercise; a patient who keeps the arms down and swings a leg as much
    moves enough (the movement factor) with poses close to the guide's (most limbs still), but moves the
    wrong body part."""
    model = ReferenceModel.build(reference())
    attempt = frames([_legs(i / 60) for i in range(120)])
    with_shares = replay_scores(LiveScorer(model, "s", min_interval_ms=100), attempt)[-1].session_similarity
    monkeypatch.setattr(scorer_module, "SHARE_POWER", 0.0)
    without = replay_scores(LiveScorer(model, "s", min_interval_ms=100), attempt)[-1].session_similarity
    assert with_shares < 0.6 * without


def test_the_hint_names_the_body_part_that_moves_beyond_its_share():
    model = ReferenceModel.build(reference())
    attempt = frames([_legs(i / 60) for i in range(120)])
    hints = [c for s in replay_scores(LiveScorer(model, "s", min_interval_ms=100), attempt) for c in s.corrections]
    named = {c["joint"] for c in hints if c["message"].startswith("follow the guide's movement: it moves the")}
    assert named and named <= {"knees", "ankles"}, named
    right = replay_scores(LiveScorer(model, "s", min_interval_ms=100), frames([pose_at(i / 60) for i in range(120)]))
    assert not [c for s in right for c in s.corrections if c["message"].startswith("follow the guide's movement: it")]
