"""Settings from argv and the environment: the contract the Kubernetes manifests rely on."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from atcr_verify import ConfigError
from provider.settings import ConfigMapRef, HostPort, ProviderSettings, parse_settings


def test_defaults_match_the_deployment_contract() -> None:
    settings = parse_settings(["--policy-configmap", "atcr-system/atcr-trust-policy"], {})
    assert settings.listen == HostPort("0.0.0.0", 8443)
    assert settings.health_listen == HostPort("0.0.0.0", 8080)
    assert settings.tls_cert == Path("/certs/tls.crt")
    assert settings.tls_key == Path("/certs/tls.key")
    assert settings.client_ca is None
    assert settings.policy_configmap == ConfigMapRef("atcr-system", "atcr-trust-policy")
    assert settings.policy_file is None
    assert settings.policy_key == "policy.yaml"
    assert settings.deadline == 2.5
    assert settings.max_concurrency == 32
    assert settings.max_keys == 1000
    assert settings.log_level == "info"
    assert settings.verifier.identity.plc_url == "https://plc.directory"
    assert settings.verifier.verify_timeout == 2.5
    assert not settings.verifier.network.allow_private_networks


def test_every_flag_has_an_environment_equivalent() -> None:
    env = {
        "ATCR_PROVIDER_LISTEN": "127.0.0.1:9443",
        "ATCR_PROVIDER_TLS_CERT": "/tls/c.pem",
        "ATCR_PROVIDER_TLS_KEY": "/tls/k.pem",
        "ATCR_PROVIDER_CLIENT_CA": "/gk/ca.crt",
        "ATCR_PROVIDER_HEALTH_LISTEN": "[::]:9080",
        "ATCR_POLICY": "/etc/atcr/policy.yaml",
        "ATCR_POLICY_KEY": "trust.yaml",
        "ATCR_PROVIDER_DEADLINE": "1.5",
        "ATCR_PLC_URL": "http://plc.local",
        "ATCR_PLAIN_HTTP": "reg.local:5000, other:80",
        "ATCR_ALLOW_PRIVATE_NETWORKS": "1",
        "ATCR_ALLOW_NETWORKS": "10.0.0.0/8",
        "ATCR_PROVIDER_MAX_CONCURRENCY": "8",
        "ATCR_PROVIDER_MAX_KEYS": "50",
        "ATCR_PROVIDER_RELOAD_INTERVAL": "2",
        "ATCR_PROVIDER_LOG_LEVEL": "DEBUG",
        "KUBECONFIG": "/home/me/.kube/config",
    }
    settings = parse_settings([], env)
    assert settings.listen == HostPort("127.0.0.1", 9443)
    assert settings.tls_cert == Path("/tls/c.pem") and settings.tls_key == Path("/tls/k.pem")
    assert settings.client_ca == Path("/gk/ca.crt")
    assert settings.health_listen == HostPort("::", 9080)
    assert settings.policy_file == Path("/etc/atcr/policy.yaml")
    assert settings.policy_key == "trust.yaml"
    assert settings.deadline == 1.5 and settings.verifier.verify_timeout == 1.5
    assert settings.verifier.identity.plc_url == "http://plc.local"
    assert settings.verifier.registry.plain_http_hosts == {"reg.local:5000", "other:80"}
    assert settings.verifier.network.allow_private_networks
    assert settings.verifier.network.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert settings.verifier.identity.allow_http_pds
    assert settings.max_concurrency == 8 and settings.max_keys == 50
    assert settings.reload_interval == 2.0
    assert settings.log_level == "debug"
    assert settings.kubeconfig == Path("/home/me/.kube/config")


def test_flags_win_over_the_environment() -> None:
    env = {"ATCR_PROVIDER_DEADLINE": "1", "ATCR_PLAIN_HTTP": "a:1", "ATCR_POLICY": "/env.yaml"}
    settings = parse_settings(
        [
            "--deadline",
            "2",
            "--plain-http",
            "b:2",
            "--plain-http",
            "c:3",
            "--policy-configmap",
            "ns/cm",
            "--client-ca",
            "/ca.pem",
            "--allow-private-networks",
        ],
        env,
    )
    assert settings.deadline == 2.0
    assert settings.verifier.registry.plain_http_hosts == {"b:2", "c:3"}
    # a policy source flag replaces the environment's source instead of conflicting with it
    assert settings.policy_configmap == ConfigMapRef("ns", "cm") and settings.policy_file is None
    assert settings.client_ca == Path("/ca.pem")
    assert settings.verifier.network.allow_private_networks


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),  # no policy source
        (["--policy-file", "p.yaml", "--policy-configmap", "ns/cm"], {}),
        ([], {"ATCR_POLICY": "p.yaml", "ATCR_POLICY_CONFIGMAP": "ns/cm"}),
        (["--policy-configmap", "no-slash"], {}),
        (["--policy-configmap", "Bad_NS/cm"], {}),
        (["--policy-file", "p", "--listen", "8443"], {}),
        (["--policy-file", "p", "--listen", "host:99999"], {}),
        (["--policy-file", "p", "--deadline", "0"], {}),
        (["--policy-file", "p", "--deadline", "31"], {}),
        (["--policy-file", "p", "--deadline", "soon"], {}),
        (["--policy-file", "p", "--max-keys", "0"], {}),
        (["--policy-file", "p", "--max-concurrency", "-1"], {}),
        (["--policy-file", "p", "--log-level", "loud"], {}),
        (["--policy-file", "p", "--allow-network", "not-a-cidr"], {}),
        (["--policy-file", "p"], {"ATCR_PROVIDER_DEADLINE": "never"}),
        (["--policy-file", "p"], {"ATCR_ALLOW_NETWORKS": "nope"}),
    ],
)
def test_usage_errors_exit_2(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_settings(argv, env)
    assert raised.value.code == 2


def test_the_dataclass_is_frozen_and_validates_itself() -> None:
    settings = ProviderSettings(policy_file=Path("p.yaml"))
    with pytest.raises(AttributeError):
        settings.deadline = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigError):
        ProviderSettings()
    with pytest.raises(ConfigError):
        ProviderSettings(policy_file=Path("p.yaml"), max_keys=0)
