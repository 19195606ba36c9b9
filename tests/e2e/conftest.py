"""The live stack for end-to-end tests: gateway, pose worker and processor as processes, on a topic
namespace and database of their own, with the guide clip stored as reference "guide"."""
import asyncio

import pytest

from rehab.stack.services import Services
from rehab.adapters.storage.repository import Database
from tests.conftest import free_port, isolated


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory, guide_reference):
    port = free_port()
    with isolated(gateway_port=port, gateway_url=f"http://127.0.0.1:{port}", worker_metrics_port=free_port(),
                  processor_metrics_port=free_port(), session_idle_s=15,
                  auth_secret="e2e-secret-shared-by-the-gateways", admin_api_key="e2e-admin-key-0123456789",
                  client_errors_per_min=6000) as settings:  # every test calls from one address
        async def save():
            async with Database.opened(settings) as db:
                await db.save_reference(guide_reference)

        asyncio.run(save())
        with Services(settings, tmp_path_factory.mktemp("services")):
            yield settings


