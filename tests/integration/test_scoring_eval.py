"""The scoring evaluation on video variants of the real clips (about a minute: marked slow, run with
`./dev test -m slow`): every target of issue 4 on the bundled clips, as the benchmark prints them."""
import pytest

from benchmarks.scoring_eval import evaluate
from rehab.settings import Settings


@pytest.mark.slow
def test_scoring_separates_the_exercise_from_doing_something_else(data_dir, tmp_path):
    report = evaluate(data_dir, tmp_path, min_interval_ms=Settings().processor_min_interval_ms)
    table = {row["variant"]: row for row in report["table"]}
    assert report["lowest_positive"] >= 0.75, table
    assert report["highest_negative"] <= 0.35, table
    assert report["separation"] >= 0.3, table
    assert table["cam02 three times"]["reps"] == 3, table
    # one repetition filmed otherwise, slower or faster, counts one (x1.6 counted 0 before limbdtw-3.4.0)
    assert report["targets"]["each_single_repetition_counts_1"], {k: v["reps"] for k, v in table.items()}
    assert table["cam02 frozen frame"]["reps"] == 0
    assert table["walking (vtest)"]["reps"] == 0, "walking past is not a repetition of the exercise"
    # a nearer, taller bystander moving her arms beside the patient: the patient's score (in lowest_positive too)
    assert table["cam02 + nearer moving bystander"]["similarity"] >= 0.75, table
    # somebody moving, but not the guide's movement (that bystander alone, arms waving): issue 10 asks
    # <= 0.35, which limbdtw-3.4.0 does not meet (0.54; 3.3.0: 0.53; 3.2.0: 0.49, docs/scoring.md); this bound keeps it
    # from rising further
    assert table["another movement (arms waving)"]["similarity"] <= 0.55, table
    assert table["another movement (arms waving)"]["reps"] == 0, table
