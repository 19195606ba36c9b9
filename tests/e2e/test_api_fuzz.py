"""Schema-driven fuzz of the REST API: schemathesis generates requests from the gateway's own
/openapi.json (bodies, path and query parameters, credentials as declared there; valid and invalid
data) and sends them to the live gateway. Each is sent twice: as generated (no or made-up
credentials), and with real ones (the admin API key, a live session's token and that session's id in
the path), so the checks behind the credentials are reached too. No answer may be a server error.

The fuzz calls from its own loopback address (127.0.0.2): the gateway's per-client limits then keep
its hundreds of refusals from spending the budget of the other tests (which call from 127.0.0.1)."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

FUZZ_ADDRESS = "127.0.0.2"


class _FromAddress(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (FUZZ_ADDRESS, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def fuzz_http():
    with requests.Session() as http:
        http.mount("http://", _FromAddress())
        yield http


@pytest.fixture(scope="module")
def real_session(live_stack, fuzz_http) -> dict:
    r = fuzz_http.post(f"{live_stack.gateway_url}/sessions", timeout=30,
                       json={"reference_id": "guide", "patient_id": "fuzz-patient", "mode": "device"})
    assert r.status_code == 201, r.text
    return r.json()


def test_no_request_gets_a_server_error(live_stack, fuzz_http, real_session):
    """Every operation of the document, valid and invalid data (schemathesis' positive and negative
    generation modes), each example sent without and with credentials. (schemathesis' pytest plugin
    does not run under pytest 9; its strategies are driven here with hypothesis directly.)"""
    api = schemathesis.openapi.from_url(f"{live_stack.gateway_url}/openapi.json")
    credentials = {"X-API-Key": live_stack.admin_api_key, "Authorization": f"Bearer {real_session['token']}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    sent: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def fuzz(case):
                case.call_and_validate(session=fuzz_http, checks=[not_a_server_error], timeout=60)
                if "session_id" in (case.path_parameters or {}):
                    case.path_parameters["session_id"] = real_session["session_id"]
                case.call_and_validate(session=fuzz_http, headers=credentials, checks=[not_a_server_error],
                                       timeout=60)
                sent[operation.label] = sent.get(operation.label, 0) + 2

            try:
                fuzz()
            except Unsatisfiable:  # nothing in the operation to make invalid (no parameter, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
    print("requests per operation:", sent)
