"""docker-compose.yml parses, and every service gets the settings its code reads."""
import re

import yaml

from rehab.cli import build_parser
from rehab.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
APP_SERVICES = {"init": None, "gateway": "gateway", "edge-worker": "worker", "stream-processor": "processor"}
NEEDS = {
    "gateway": {"REHAB_KAFKA_BOOTSTRAP", "REHAB_MYSQL_HOST", "REHAB_MYSQL_PASSWORD", "REHAB_GATEWAY_HOST",
                "REHAB_GATEWAY_PORT"},
    "edge-worker": {"REHAB_KAFKA_BOOTSTRAP", "REHAB_POSE_BACKEND", "REHAB_POSE_DEVICE", "REHAB_POSE_WEIGHTS",
                    "REHAB_WORKER_GROUP"},
    "stream-processor": {"REHAB_KAFKA_BOOTSTRAP", "REHAB_MYSQL_HOST", "REHAB_MYSQL_DB", "REHAB_PROCESSOR_APP_ID"},
    "init": {"REHAB_KAFKA_BOOTSTRAP", "REHAB_MYSQL_HOST", "REHAB_MYSQL_USER", "REHAB_MYSQL_PASSWORD"},
}


def test_compose_has_the_whole_deployment():
    assert set(COMPOSE["services"]) >= {"kafka", "mysql", *APP_SERVICES}
    assert COMPOSE["services"]["mysql"]["image"].startswith("mysql:8")
    assert "controller" in COMPOSE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "KRaft mode"
    gpu = COMPOSE["services"]["edge-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_each_service_gets_the_settings_its_code_reads():
    known = set(Settings.env_names())
    for name, needed in NEEDS.items():
        env = COMPOSE["services"][name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables no code reads: {unknown}"
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"


def test_each_service_command_is_a_real_cli_command():
    parser = build_parser()
    for name in APP_SERVICES:
        args = parser.parse_args(COMPOSE["services"][name]["command"])
        assert callable(args.func), name


def test_compose_settings_are_valid_values():
    for name in APP_SERVICES:
        env = {k: str(v) for k, v in COMPOSE["services"][name]["environment"].items() if "${" not in str(v)}
        Settings.from_env(env)  # raises SettingsError on a bad value


def test_every_service_restarts_by_itself():
    for name, service in COMPOSE["services"].items():
        expected = "on-failure" if name == "init" else "unless-stopped"
        assert service.get("restart") == expected, f"{name}: restart {service.get('restart')!r}"


def test_workers_and_processors_scale_and_agree_on_the_partitions():
    """``--scale`` needs services without a fixed container name or host port; every service (init
    creates the topics with it, the processor checks it) reads the same REHAB_PARTITIONS."""
    for name in ("edge-worker", "stream-processor"):
        service = COMPOSE["services"][name]
        assert "container_name" not in service and "ports" not in service, f"{name} cannot be scaled"
    values = {name: COMPOSE["services"][name]["environment"].get("REHAB_PARTITIONS") for name in APP_SERVICES}
    assert len(set(values.values())) == 1 and None not in values.values(), values
    default = int(values["init"].split(":-")[1].rstrip("}"))
    assert default >= 8, "room for more processors and workers than the 2-core machine's 4 partitions"


def _env_refs(service: dict) -> dict[str, str]:
    """``${NAME...}`` references in a service's environment: NAME -> the whole reference."""
    refs = {}
    for value in service.get("environment", {}).values():
        for match in re.finditer(r"\$\{(\w+)([^}]*)\}", str(value)):
            refs[match.group(1)] = match.group(0)
    return refs


def test_secrets_have_no_default_values():
    """A deployment that forgot a secret must not start with a password anyone can read in this file."""
    required = set()
    for name, service in COMPOSE["services"].items():
        for var, ref in _env_refs(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", var):
                assert ref.startswith(f"${{{var}:?"), f"{name}: {ref} must be required (${{{var}:?...}})"
                required.add(var)
            elif var.endswith("_KEY") and ":-" in ref:
                assert ref == f"${{{var}:-}}", f"{name}: {ref}: a key's only default is empty (off)"
    assert required >= {"REHAB_MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "REHAB_AUTH_SECRET"}


def test_the_gateway_in_compose_is_not_in_demo_mode():
    """Demo mode (sessions for any patient without a credential) is for the local main job only."""
    from rehab.settings import Settings

    env = {k: str(v) for k, v in COMPOSE["services"]["gateway"]["environment"].items() if "${" not in str(v)}
    assert "REHAB_DEMO_MODE" in env and Settings.from_env(env).demo_mode is False
    for name in APP_SERVICES:
        assert "true" not in str(COMPOSE["services"][name]["environment"].get("REHAB_DEMO_MODE", "")).lower(), name


def test_turn_takes_only_the_gateways_time_limited_credentials():
    """coturn checks the credentials the gateway signs per session (gateway/turn.py) with the same
    required secret; it relays no multicast and nothing to the cloud metadata range."""
    coturn, gateway = COMPOSE["services"]["coturn"], COMPOSE["services"]["gateway"]["environment"]
    args = coturn["command"]
    assert "--use-auth-secret" in args and "--no-cli" in args and "--no-multicast-peers" in args
    secret = next(a for a in args if a.startswith("--static-auth-secret="))
    assert secret.startswith("--static-auth-secret=${REHAB_TURN_SECRET:?")
    assert gateway["REHAB_TURN_SECRET"].startswith("${REHAB_TURN_SECRET:?")
    assert gateway["REHAB_TURN_URLS"].startswith("${REHAB_TURN_URLS:?")
    assert "--denied-peer-ip=169.254.0.0-169.254.255.255" in args
    assert coturn["cap_drop"] == ["ALL"]


def test_our_services_run_unprivileged():
    users = [line.split()[1] for line in (REPO_ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image's last USER is not root"
    for name in APP_SERVICES:
        service = COMPOSE["services"][name]
        assert service["build"] == "." and service["user"].split(":")[0] not in ("0", "root"), name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name


def test_every_service_has_limits_and_every_long_running_one_a_health_check():
    for name, service in COMPOSE["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name}: no CPU or memory limit"
        if name != "init":  # (one-shot)
            assert "healthcheck" in service, f"{name}: no health check"


def test_health_checks_ask_the_ports_the_services_listen_on():
    for name, port_var, path in (("gateway", "REHAB_GATEWAY_PORT", "/health"),
                                 ("edge-worker", "REHAB_WORKER_METRICS_PORT", "/metrics"),
                                 ("stream-processor", "REHAB_PROCESSOR_METRICS_PORT", "/metrics")):
        service = COMPOSE["services"][name]
        port = service["environment"][port_var]
        assert f"127.0.0.1:{port}{path}" in " ".join(service["healthcheck"]["test"]), name


def test_only_the_gateway_publishes_a_port_and_never_a_metrics_port():
    published = {name: service["ports"] for name, service in COMPOSE["services"].items() if "ports" in service}
    assert set(published) == {"gateway"}, published
    metrics = {str(COMPOSE["services"][n]["environment"][v]) for n, v in (("edge-worker", "REHAB_WORKER_METRICS_PORT"),
                                                                           ("stream-processor", "REHAB_PROCESSOR_METRICS_PORT"))}
    assert not any(str(p).split(":")[-1] in metrics for p in published["gateway"])
