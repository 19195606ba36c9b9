"""``rehab stack up`` (``rehab.stack.local``) with its parts faked: what it does once the broker runs."""
from __future__ import annotations

import pytest

from rehab.settings import Settings
from rehab.stack import local
from rehab.stack.proc import StackError


@pytest.fixture
def broker_started(monkeypatch):
    monkeypatch.setattr(local.KafkaBroker, "up", lambda self: "Kafka started")
    monkeypatch.setattr(local, "prepare_topics", lambda settings: ([], {}))


def test_up_waits_for_the_broker_to_serve_and_says_how_long(broker_started, monkeypatch):
    asked = []
    monkeypatch.setattr(local, "wait_serving", lambda bootstrap, topics, group: asked.append((topics, group)) or 4.2)
    said = []
    local.up(Settings(), log=said.append, only="kafka")
    assert asked == [([s.name for s in Settings().topics.specs()], Settings().processor_app_id)]
    assert any("serving" in line and "4.2 s" in line for line in said), said


def test_a_broker_that_never_serves_is_a_clear_error_naming_its_log(broker_started, monkeypatch):
    def never(bootstrap, topics, group):
        raise TimeoutError("the Kafka broker at 127.0.0.1:19092 did not serve within 90 s")

    monkeypatch.setattr(local, "wait_serving", never)
    with pytest.raises(StackError, match=r"did not serve within 90 s \(its log: .*kafka\.log\)"):
        local.up(Settings(), log=lambda line: None, only="kafka")
