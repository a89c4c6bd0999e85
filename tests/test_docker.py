"""docker/: the settings the image and compose.yaml hand Hearth are ones Hearth accepts, and compose.yaml
holds together (what `docker compose config` would catch, as far as no engine is needed).

The compose-spec schema check and the real build and run are in .ci/docker-check (CI's docker step).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hearth import config

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def dockerfile_env() -> dict[str, str]:
    """The HEARTH_* variables the image's ENV lines set."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*(?:ENV\s+)?(HEARTH_[A-Z_]+)=(\S+?)\s*\\?$", text, flags=re.MULTILINE))


def test_image_env_is_valid_hearth_settings() -> None:
    env = dockerfile_env()
    assert env["HEARTH_HOME"] == "/data"
    settings = config.load(config.Settings, env=env)
    assert settings.server.require_keys is True
    assert settings.server.port == 8000


def test_compose_env_is_valid_hearth_settings() -> None:
    service = compose()["services"]["hearth"]
    env = {**dockerfile_env(), **{k: interpolate(str(v)) for k, v in service["environment"].items()}}
    settings = config.load(config.Settings, env=env)
    assert settings.kb.store == "milvus"
    assert settings.kb.uri == "http://milvus:19530"
    assert settings.server.require_keys is True  # compose must not turn keys off
    assert settings.model == "smollm2"
    assert settings.server.allowed_hosts == ["hearth"]  # the service's name on the compose network
    vllm = compose()["services"]["vllm"]
    assert settings.backends["vllm"].base_url.startswith("http://vllm:")
    assert settings.backends["vllm"].model in vllm["command"]


def test_compose_holds_together() -> None:
    doc = compose()
    services, volumes = doc["services"], doc["volumes"]
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on a service that does not exist: {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith(".") or source in volumes, f"{name} mounts an undeclared volume {source}"
    assert services["vllm"]["profiles"] == ["gpu"]
    assert all("profiles" not in s for n, s in services.items() if n != "vllm")  # the default stack: no vLLM
    build = services["hearth"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert "hearth-data:/data" in services["hearth"]["volumes"]
