"""Which environment variables each deployable reads, from its ``Settings`` class, so
that the compose file and the manifests can be checked against the code."""

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from analyzer_bridge.settings import Settings as BridgeSettings
from gateway.settings import Settings as GatewaySettings
from notifier.settings import Settings as NotifierSettings
from reference_analyzer.settings import Settings as ReferenceAnalyzerSettings
from uploader.settings import Settings as UploaderSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "uploader": UploaderSettings,
    "analyzer-bridge": BridgeSettings,
    "notifier": NotifierSettings,
    "reference-analyzer": ReferenceAnalyzerSettings,
}

MODULES = {
    "gateway": "gateway",
    "uploader": "uploader",
    "analyzer-bridge": "analyzer_bridge",
    "notifier": "notifier",
    "reference-analyzer": "reference_analyzer",
}


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every variable name ``settings`` reads (pydantic-settings is case-insensitive
    by default; names are upper-cased here)."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add((prefix + name).upper())
    return names


def default_port(service: str) -> int:
    port = SETTINGS[service].model_fields["http_port"].default
    assert isinstance(port, int)
    return port
