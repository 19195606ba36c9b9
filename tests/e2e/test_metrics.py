"""Every service exposes Prometheus metrics: per-hop latency histograms, drops, sessions, consumer lag."""
import asyncio
import time

import httpx

from rehab.cli.client import create_session, stream_file


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_each_service_reports_its_hops_sessions_and_lag(live_stack, data_dir):
    async def run():
        grant = await create_session(live_stack.gateway_url, "guide")
        return [r async for r in stream_file(live_stack.gateway_url, grant, str(data_dir / "pose2sim_single_cam02.mp4"))]

    assert asyncio.run(run())
    time.sleep(6)  # the lag watchers look every 5 s
    urls = {"gateway": f"{live_stack.gateway_url}/metrics",
            "worker": f"http://127.0.0.1:{live_stack.worker_metrics_port}/metrics",
            "processor": f"http://127.0.0.1:{live_stack.processor_metrics_port}/metrics"}
    m = {name: _samples(httpx.get(url, timeout=10).text) for name, url in urls.items()}
    assert m["gateway"]['rehab_hop_latency_ms_count{hop="capture_to_gateway"}'] >= 20
    assert m["gateway"]['rehab_hop_latency_ms_count{hop="scored_to_pushed"}'] >= 5
    assert 'rehab_sessions_active{service="gateway"}' in m["gateway"]
    assert m["gateway"]["rehab_gateway_device_frames_queued"] == 0, "nothing waits for Kafka once the clip is sent"
    assert m["gateway"]['rehab_messages_total{kind="frames_published",service="gateway"}'] >= 20
    assert m["worker"]['rehab_hop_latency_ms_count{hop="gateway_to_inferred"}'] >= 20
    assert m["worker"]['rehab_consumer_lag{service="worker",topic="%s"}' % live_stack.topics.frames] >= 0
    assert m["processor"]['rehab_hop_latency_ms_count{hop="capture_to_scored"}'] >= 5
    assert m["processor"]['rehab_messages_total{kind="scores",service="processor"}'] >= 5
    assert 'rehab_consumer_lag{service="processor",topic="%s"}' % live_stack.topics.keypoints in m["processor"]
