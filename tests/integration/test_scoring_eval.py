"""The scoring evaluation on video variants of the real clips (about a minute: marked slow, run with
`./dev test -m slow`). Asserts the targets the scorer meets today; the positives' >= 0.75 and the
three-times video's 3 repetitions (it counts 2 since the subject policy's crop changed the keypoints)
are reported by the benchmark and not asserted, because they are not met yet (see docs/scoring.md)."""
import pytest

from benchmarks.scoring_eval import evaluate


@pytest.mark.slow
def test_scoring_separates_the_exercise_from_doing_something_else(data_dir, tmp_path):
    report = evaluate(data_dir, tmp_path, min_interval_ms=30)
    table = {row["variant"]: row for row in report["table"]}
    assert report["highest_negative"] <= 0.35, table
    assert report["separation"] >= 0.3, table
    assert table["cam02 frozen frame"]["reps"] == 0
    assert table["cam02 (other camera)"]["similarity"] > table["walking (vtest)"]["similarity"] + 0.3
