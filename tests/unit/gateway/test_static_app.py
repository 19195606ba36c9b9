"""The browser app's own copy of what the product publishes: its verdict words and thresholds are the
scorer's (a page that called 0.6 "poor" while `rehab score` says `needs work` would tell a patient one
thing and the clinician another)."""
import re

from rehab.scoring.offline import NOT_THE_EXERCISE, verdict
from rehab.scoring.scorer import GOOD
from rehab.settings import REPO_ROOT

APP = (REPO_ROOT / "gateway" / "static" / "app.js").read_text()


def test_the_page_judges_with_the_published_thresholds_and_words():
    good = re.search(r"\bGOOD = ([0-9.]+)", APP)
    not_the_exercise = re.search(r"\bNOT_THE_EXERCISE = ([0-9.]+)", APP)
    assert good and not_the_exercise, "app.js no longer declares GOOD / NOT_THE_EXERCISE"
    assert float(good.group(1)) == GOOD and float(not_the_exercise.group(1)) == NOT_THE_EXERCISE
    for word in {verdict(s) for s in (0.0, 0.5, 1.0)}:
        assert f'"{word}"' in APP, word
