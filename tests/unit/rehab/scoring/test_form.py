"""The form assessment (rehab/scoring/form.py): range of motion per joint angle against the guide's,
invariant to body proportions, camera distance and mirroring; compensation and a short range cost
points and are named in the hints."""
from __future__ import annotations

import numpy as np
import pytest

from rehab.scoring import LiveScorer, ReferenceModel, replay_scores, score_attempt
from rehab.scoring.form import FEATURES, FormModel, angle_features, decode, encode
from rehab.scoring.scorer import CALIBRATION_KNEE, GOOD, calibrate
from tests.unit.rehab.scoring.test_scoring import STAND, frames, pose_at, reference

TRUNK = FEATURES.index("trunk")


def with_trunk_sway(kps: list, angle: float) -> list:
    """The upper body (shoulders up) rotated about the mid-hip by ``angle`` radians: a trunk that leans."""
    out = np.array(kps)
    hip = (STAND[11] + STAND[12]) / 2
    c, s = np.cos(angle), np.sin(angle)
    for j in range(11):
        d = out[j, :2] - hip
        out[j, :2] = hip + [c * d[0] - s * d[1], s * d[0] + c * d[1]]
    return out.tolist()


def with_long_limbs(kps: list, factor: float) -> list:
    """Another body: arms and legs ``factor`` times as long (same joint angles)."""
    out = np.array(kps)
    for parent, child, grand in ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16)):
        upper = out[child, :2] - out[parent, :2]
        lower = out[grand, :2] - out[child, :2]
        out[child, :2] = out[parent, :2] + factor * upper
        out[grand, :2] = out[child, :2] + factor * lower
    return out.tolist()


def attempt(fn=lambda k, t: k, n=120):
    return frames([fn(pose_at(i / 60), i / 60) for i in range(n)])


def test_angle_features_ignore_body_size_limb_length_and_mirroring():
    kps = np.array([pose_at(t) for t in np.linspace(0, 1, 30)])
    base = angle_features(kps)
    scaled = kps.copy()
    scaled[..., :2] = scaled[..., :2] * 2.5 + 40  # nearer the camera, elsewhere in the picture
    assert np.allclose(angle_features(scaled), base)
    assert np.allclose(angle_features(np.array([with_long_limbs(k.tolist(), 1.3) for k in kps])), base)
    mirrored = kps.copy()
    mirrored[..., 0] = 640 - mirrored[..., 0]
    mirrored = mirrored[:, [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]]
    assert np.allclose(angle_features(mirrored), base)


def test_unseen_joints_give_nan_not_zero():
    kps = np.array([pose_at(0.3)] * 3)
    kps[:, 9, 2] = 0.0  # left wrist not seen: the paired elbow and forearm angles are unknown
    f = angle_features(kps)
    assert np.isnan(f[:, FEATURES.index("elbows (the straighter)")]).all()
    assert not np.isnan(f[:, TRUNK]).any()


def test_the_guides_moving_angles_are_learned_from_the_guide():
    model = ReferenceModel.build(reference()).form
    # the exercise swings the left arm: upper arm and elbow angles move; trunk, knees, thighs stay still
    moving = dict(zip(FEATURES, model.moving))
    assert moving["upper arms (higher)"] > 0.9
    assert moving["trunk"] == 0.0 and moving["knees (the more bent)"] == 0.0 and moving["thighs (higher)"] == 0.0


def test_a_leaning_trunk_costs_points_and_is_named():
    good = score_attempt(reference(), attempt())
    swaying = score_attempt(reference(), attempt(lambda k, t: with_trunk_sway(k, 0.35 * np.sin(2 * np.pi * t))))
    assert good["similarity"] >= GOOD
    assert swaying["similarity"] < good["similarity"] - 0.1
    assert any(c["joint"] == "trunk" and c["direction"] in ("keep still", "upright") for c in swaying["corrections"])


def test_a_trunk_that_leans_the_whole_time_costs_points_and_is_named():
    """A constant lean moves no angle (no range beyond the guide's), but the trunk is further from
    upright than the guide ever is: a compensation seen by its level (limbdtw-3.2.0). Leaning less than
    the guide does costs nothing."""
    def leaning_by(angle):  # the angles of a second of the exercise with the trunk leaning by ``angle``
        return angle_features(np.array([with_trunk_sway(pose_at(i / 60), angle) for i in range(60)]))

    good = score_attempt(reference(), attempt())
    leaning = score_attempt(reference(), attempt(lambda k, t: with_trunk_sway(k, 0.25)))
    assert good["similarity"] >= GOOD
    assert leaning["similarity"] < good["similarity"] - 0.2
    assert leaning["corrections"][0]["joint"] == "trunk" and leaning["corrections"][0]["direction"] == "upright"
    model = ReferenceModel.build(reference()).form
    assert model.assess(leaning_by(0.25)).lean == pytest.approx(0.25, abs=0.02)
    assert model.assess(angle_features(np.array([pose_at(i / 60) for i in range(60)]))).lean == 0.0
    assert FormModel.of(leaning_by(0.3)).assess(leaning_by(0.2)).lean == 0.0  # less than the guide leans
    # a second correct take that leans: the furthest correct take is the tolerance
    two_takes = FormModel.of(leaning_by(0.0), more_takes=[leaning_by(0.25)])
    assert two_takes.assess(leaning_by(0.25)).lean == pytest.approx(0.0, abs=1e-9)
    assert two_takes.assess(leaning_by(0.4)).lean == pytest.approx(0.15, abs=0.02)


def test_an_arm_that_does_not_go_as_far_as_the_guides_costs_points():
    def half(k, t):
        p = np.array(STAND)
        angle = np.pi * 0.45 * np.sin(np.pi * t) ** 2  # half the guide's swing
        for j, length in ((7, 30.0), (9, 60.0)):
            p[j] = p[5] + length * np.array([-np.sin(angle), np.cos(angle)])
        right = np.array(k)[[6, 8, 10], :2]
        p[[6, 8, 10]] = right
        return [[float(x), float(y), 0.95] for x, y in p]

    model = ReferenceModel.build(reference())
    full, short = LiveScorer(model, "a"), LiveScorer(model, "b")
    replay_scores(full, attempt())
    replay_scores(short, attempt(half))
    assert full.form().factor > 0.95
    assert short.form().factor < full.form().factor - 0.1
    assert short.form().deficit.sum() > 0.3
    assert any(c["direction"] == "full range" for c in short.form().corrections())


def test_another_body_and_another_distance_score_as_well_as_the_guides_own_body():
    same = score_attempt(reference(), attempt())["similarity"]
    other = score_attempt(reference(), attempt(lambda k, t: with_long_limbs(k, 1.25)))["similarity"]
    far = score_attempt(reference(), frames([pose_at(i / 60) for i in range(120)], scale=0.5, shift=(200, 100)))
    assert other == pytest.approx(same, abs=0.03)
    assert far["similarity"] == pytest.approx(same, abs=0.03)


def test_too_little_seen_is_no_judgement_yet():
    model = FormModel.of(angle_features(np.array([pose_at(t) for t in np.linspace(0, 1, 60)])))
    assert model.assess(np.full((20, len(FEATURES)), np.nan)).factor == 1.0
    assert model.assess(angle_features(np.array([pose_at(0.1)] * 5))).factor == 1.0


def test_angles_survive_their_one_byte_encoding_to_within_a_degree():
    f = angle_features(np.array([pose_at(t) for t in np.linspace(0, 1, 30)]))
    f[3, 2] = np.nan
    back = decode(encode(f))
    assert np.isnan(back[3, 2])
    ok = ~np.isnan(f)
    assert np.abs(back[ok] - f[ok]).max() <= np.pi / 254 / 2 + 1e-12


def test_calibration_is_monotone_and_maps_the_knee_to_good():
    xs = np.linspace(0, 1, 101)
    ys = [calibrate(x) for x in xs]
    assert ys[0] == 0.0 and ys[-1] == 1.0 and all(b >= a for a, b in zip(ys, ys[1:]))
    assert calibrate(CALIBRATION_KNEE) == pytest.approx(GOOD)
    assert calibrate(-1.0) == 0.0 and calibrate(2.0) == 1.0


def test_the_offline_result_carries_a_verdict_and_its_thresholds():
    good = score_attempt(reference(), attempt())
    frozen = score_attempt(reference(), frames([pose_at(0.5)] * 120))
    assert good["verdict"] == "good" and good["similarity"] >= good["thresholds"]["good"]
    assert frozen["verdict"] == "not the exercise"
    assert frozen["similarity"] < frozen["thresholds"]["not_the_exercise"]


# -- a guide of several takes and named mistakes -------------------------------------------------------

def take(fn=lambda k, t: k, n=60, label=None):
    from rehab.reference import Take

    return Take(30.0, 640, 480, [fn(pose_at(i / n), i / n) for i in range(n)], label)


def swaying(amount):
    return lambda k, t: with_trunk_sway(k, amount * np.sin(2 * np.pi * t))


def test_one_take_is_scored_exactly_as_before_takes_existed():
    """A guide with no other takes builds the single-take model (no tolerance arrays): the same bytes."""
    model = ReferenceModel.build(reference()).form
    assert model.rom is None and not model.mistakes
    feats = angle_features(np.array([with_trunk_sway(pose_at(t), 0.2 * np.sin(2 * np.pi * t))
                                     for t in np.linspace(0, 2, 90)]))
    again = FormModel.of(angle_features(np.array([pose_at(i / 60) for i in range(60)])))
    assert model.assess(feats).factor == again.assess(feats).factor


def test_the_correct_takes_mean_range_is_what_an_attempt_is_held_to():
    """The trunk sways in a second correct take: an attempt that sways is held to the takes' mean trunk
    range, so it costs fewer points than against the still take alone; and the exercise's moving angles
    are still learned (the swing of the arm is in both takes)."""
    import dataclasses

    one = reference()
    two = dataclasses.replace(one, takes=(take(swaying(0.3)),))
    attempt_sway = attempt(swaying(0.3))
    alone, with_take = score_attempt(one, attempt_sway), score_attempt(two, attempt_sway)
    assert with_take["similarity"] > alone["similarity"] + 0.03
    model = ReferenceModel.build(two).form
    still, swayed = ReferenceModel.build(one).form, FormModel.of(angle_features(np.array(take(swaying(0.3)).frames)))
    assert model.rom[TRUNK] == pytest.approx(((still.hi - still.lo)[TRUNK] + (swayed.hi - swayed.lo)[TRUNK]) / 2)
    assert model.moving[FEATURES.index("upper arms (higher)")] > 0.9
    assert with_take["mistake"] is None


def test_an_attempt_nearer_a_recorded_mistake_scores_lower_and_the_hint_names_it():
    import dataclasses

    guide = dataclasses.replace(reference(), takes=(take(swaying(0.35), label="trunk leans sideways"),))
    leaning = score_attempt(guide, attempt(swaying(0.35)))
    without = score_attempt(reference(), attempt(swaying(0.35)))
    good = score_attempt(guide, attempt())
    assert leaning["mistake"] == "trunk leans sideways"
    assert leaning["corrections"][0]["mistake"] == "trunk leans sideways"
    assert "trunk leans sideways" in leaning["corrections"][0]["message"]
    assert leaning["similarity"] < without["similarity"]
    assert good["mistake"] is None and good["verdict"] == "good"
    assert good["similarity"] == pytest.approx(score_attempt(reference(), attempt())["similarity"], abs=1e-9)


def test_the_mistake_survives_a_processor_restart():
    """The form history travels in the window snapshot: a restored scorer names the same mistake."""
    import dataclasses

    from rehab.scoring import LiveScorer

    guide = ReferenceModel.build(dataclasses.replace(reference(), takes=(take(swaying(0.35), label="lean"),)))
    fs = attempt(swaying(0.35), n=150)
    whole = LiveScorer(guide, "s")
    expected = [s for f in fs if (s := whole.update(f, score_ts_ms=0)) is not None]
    first = LiveScorer(guide, "s")
    got = [s for f in fs[:100] if (s := first.update(f, score_ts_ms=0)) is not None]
    second = LiveScorer(guide, "s")
    second.restore(first.snapshot())
    second.restore_window(first.window_snapshot(), fs[0])
    got += [s for f in fs[100:] if (s := second.update(f, score_ts_ms=0)) is not None]
    assert [s.corrections for s in got] == [s.corrections for s in expected]
    assert any(c.get("mistake") == "lean" for c in expected[-1].corrections)
