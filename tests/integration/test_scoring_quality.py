"""The score on people it was never shown (UI-PRMD, benchmarks/scoring_quality.py): a guide of one
subject, the other subjects' correct and incorrect repetitions as attempts."""
import multiprocessing
import os

import pytest

from benchmarks import scoring_quality as sq


def _run(views, movements, processes=2, takes=1, mistakes=0, sequences=False):
    """The attempts scored against every guide of the protocol, in two processes (the jobs are
    independent: a result does not depend on where it was computed), started from a fresh server
    process rather than forked from this one, whose earlier tests may have left threads running
    (a fork copies a lock another thread holds); ``sequences``: also the repetition count's sequences,
    which only the slow test reads."""
    results = sq.run_pass(views, movements, processes, takes, mistakes, sequences=sequences,
                          mp_context=multiprocessing.get_context("forkserver"))
    return sq.summarise(results), results


def test_a_compensating_shoulder_abduction_scores_below_a_correct_one_by_other_people():
    """Shoulder abduction seen from the front, the incorrect repetitions lean the trunk and bend the
    elbow. The movement-only score (limbdtw-2.1.0) told them apart at AUC 0.80 across subjects; the form
    term (range of motion per joint angle against the guide's) is what lifts it above 0.9."""
    summary, _ = _run(["front"], [7])
    row = summary["per_movement"]["front"][7]
    assert row["auc"] >= 0.9, row
    assert row["correct_median"] > row["incorrect_median"] + 0.05, row


def test_other_peoples_shoulder_extensions_that_lean_the_trunk_score_lower():
    """Shoulder extension seen from the front (a movement in depth the camera hardly sees): the ranges
    of motion told other people's correct and incorrect repetitions apart at AUC 0.645 (limbdtw-3.1.1);
    their incorrect repetitions lean the trunk further than the guide ever does, which the form costs
    since limbdtw-3.2.0 (0.709, docs/scoring.md); 3.3.0 weighs the session's windows by how much of the
    repetition they had seen (0.757); 3.4.0's phase keeps up with faster patients (0.748)."""
    summary, _ = _run(["front"], [8])
    row = summary["per_movement"]["front"][8]
    assert row["auc"] >= 0.73, row


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~8 minutes on 2 cores
def test_every_movement_and_view_across_subjects():
    """Regression floors below what limbdtw-3.4.0 measures with one take (0.882 front, 0.840 side:
    docs/scoring.md; 3.3.0: 0.883 / 0.841; 3.2.0: 0.854 / 0.801), below issue 10's targets (mean AUC
    0.90, no movement below 0.80), which this scorer does not meet."""
    summary, results = _run(["front", "side"], range(1, 11), processes=os.cpu_count() or 1, sequences=True)
    assert summary["summary"]["front"]["mean_auc"] >= 0.86, summary["summary"]
    assert summary["summary"]["side"]["mean_auc"] >= 0.82, summary["summary"]
    counted = [r["back_to_back"] for r in results]
    # 70 % counted exactly with limbdtw-3.1.0, 71 % with 3.3.0, 70 % with 3.4.0 (docs/scoring.md; issue 10's
    # target, 95 %, is not met)
    assert sum(c["counted"] == c["expected"] for c in counted) >= 0.65 * len(counted)
    assert all(r["frozen"]["counted"] == 0 for r in results), "a frozen pose is no repetition"
    # half-amplitude repetitions: 70 % of the sequences count none (32 % before the range was required)
    assert sum(r["half_amplitude"]["counted"] == 0 for r in results) >= 0.6 * len(results)
    # the same sequences 1.6x faster / 0.6x as fast: 69 % / 51 % counted exactly with limbdtw-3.4.0 (3.3.1:
    # 64 % / 52 %; docs/scoring.md); the floors catch a counter that stops following the patient's pace
    for name, floor in (("back_to_back_faster", 0.55), ("back_to_back_slower", 0.45)):
        assert sum(r[name]["counted"] == r[name]["expected"] for r in results) >= floor * len(results), name


def test_the_reference_subjects_recorded_mistakes_tell_other_peoples_incorrect_scaption_apart():
    """Shoulder scaption seen from the side: one take as the guide tells other people's correct and
    incorrect repetitions apart at AUC 0.78; with the reference subject's next two correct takes and
    their ten incorrect repetitions recorded as a mistake, 0.85 (limbdtw-3.2.0, docs/scoring.md). An
    attempt nearer the recorded mistake than every correct take scores lower and is named. (Seen from
    the front, where this test looked before 3.2.0, one take now reaches 0.88: the trunk's lean
    catches most of what the recorded mistakes did there, and they add 0.03.)"""
    one, _ = _run(["side"], [10])
    with_mistakes, results = _run(["side"], [10], takes=3, mistakes=10)
    a, b = one["per_movement"]["side"][10], with_mistakes["per_movement"]["side"][10]
    assert b["auc"] >= 0.84 and b["auc"] >= a["auc"] + 0.05, (a, b)
    assert b["incorrect_not_good"] > a["incorrect_not_good"], (a, b)
    named = {c: sum(x["mistake"] == "incorrect" for r in results for x in r["attempts"] if x["correct"] == c)
             for c in (True, False)}
    assert named[False] > 2 * named[True], named
