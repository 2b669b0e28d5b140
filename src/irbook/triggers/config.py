"""The webhook receiver's configuration: which sources may post, and what their posts start.

One YAML file (read with irbook's own loader, so a mistake is reported as path:line:col)
plus the environment, which holds the secrets. A file that names `secret_env: GD_SECRET`
can be committed and reviewed; a file holding the secret itself cannot, so inline secrets
still work (for a laptop demo) but come with a warning.

```yaml
playbooks: [playbooks]          # folders to load playbooks from (default $IRBOOK_PLAYBOOKS)
runner: embedded                # or {type: deployments, prefix: irbook, pool: irbook}
sources:
  guardduty-prod:
    format: guardduty           # a key of irbook.triggers.normalizers.NORMALIZERS
    auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}
    playbooks: [leaked-model-key]   # or "*": every playbook whose triggers match
    mode: dry-run               # the default: a new integration is trialled safely
    rate: {per_second: 5, burst: 20}
    max_body: 1048576
    dedup_window: 1h
    options: {}                 # the normalizer's options
```

Everything is checked at start-up (secrets present, verifier buildable, normalizer options
accepted), so a receiver that starts is one that can answer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from irbook.errors import IrbookError, Location
from irbook.model.base import Duration
from irbook.source import Source, load_file
from irbook.triggers.auth import AuthConfigError, Verifier, build_verifier
from irbook.triggers.limits import DEFAULT_BODY_LIMIT

SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_BODY_CEILING = 32 * 1024 * 1024  # a larger cap is a mistake, not a requirement

# `*_env` setting -> the verifier setting it fills, and whether it names a list.
_ENV_SETTINGS: dict[str, tuple[str, bool]] = {
    "secret_env": ("secret", False),
    "secrets_env": ("secrets", True),
    "token_env": ("token", False),
    "tokens_env": ("tokens", True),
}
_INLINE_SECRETS = ("secret", "secrets", "token", "tokens")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RateConfig(_Model):
    per_second: float = Field(gt=0, le=100_000)
    burst: float = Field(ge=1, le=1_000_000)


class AuthSettings(_Model):
    """What `build_verifier` takes, with secrets named by environment variable.

    Which settings a scheme accepts is `build_verifier`'s business; it refuses the rest
    with the setting's name, so a misspelt `header` cannot silently fall back to a default.
    """

    scheme: str
    secret_env: str | None = None
    secrets_env: list[str] | None = None
    token_env: str | None = None
    tokens_env: list[str] | None = None
    secret: str | None = None
    secrets: list[str] | None = None
    token: str | None = None
    tokens: list[str] | None = None
    header: str | None = None
    prefix: str | None = None
    delivery_header: str | None = None
    tolerance: float | None = None

    @field_validator("secret_env", "token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("expected an environment variable name such as IRBOOK_GD_SECRET")
        return value

    @field_validator("secrets_env", "tokens_env")
    @classmethod
    def _env_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one environment variable")
            for name in value:
                if not _ENV_NAME.match(name):
                    raise ValueError("expected environment variable names such as IRBOOK_GD_SECRET")
        return value


class SourceConfig(_Model):
    format: str
    auth: AuthSettings
    playbooks: list[str] | Literal["*"] = "*"
    mode: Literal["live", "dry-run"] = "dry-run"
    rate: RateConfig = RateConfig(per_second=50, burst=200)
    max_body: int = Field(default=DEFAULT_BODY_LIMIT, ge=1, le=MAX_BODY_CEILING)
    dedup_window: Duration = Field(default=3600.0, ge=0, le=30 * 86_400)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from irbook.triggers.normalizers import NORMALIZERS

        if value not in NORMALIZERS:
            raise ValueError(f"unknown format (known: {', '.join(sorted(NORMALIZERS))})")
        return value


class RunnerConfig(_Model):
    """How the receiver starts runs: in this process, or through Prefect deployments.

    `embedded` runs the flow in the receiver's process (no polling delay). `deployments`
    creates a flow run of the deployment `<prefix>-<playbook id>` that `irbook deploy`
    registered, with an idempotency key, for a process worker polling `pool` to run.

    Embedded only: at most `max_concurrent_runs` runs at once (more alerts wait in the
    store, queued, never dropped: 8 suits two cores and a local Prefect server), and a
    flow run Prefect fails to create is tried again after each of `retry_delays`, then
    the run is marked failed.
    """

    type: Literal["embedded", "deployments"] = "embedded"
    prefix: str = "irbook"
    pool: str | None = Field(default=None, min_length=1, max_length=100)
    max_concurrent_runs: int = Field(default=8, ge=1, le=1_000)
    retry_delays: list[Duration] = Field(default=[2.0, 10.0, 30.0], max_length=10)

    @field_validator("retry_delays")
    @classmethod
    def _delays(cls, value: list[float]) -> list[float]:
        if any(delay < 0 or delay > 3_600 for delay in value):
            raise ValueError("each delay must be between 0s and 1h")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", value):
            raise ValueError("expected a lowercase name such as irbook")
        return value

    @model_validator(mode="after")
    def _deployments_only(self) -> RunnerConfig:
        if self.type == "embedded" and (self.pool is not None or self.prefix != "irbook"):
            raise ValueError("prefix and pool only apply to type: deployments")
        embedded_only = {"max_concurrent_runs", "retry_delays"} & self.model_fields_set
        if self.type == "deployments" and embedded_only:
            raise ValueError(
                f"{', '.join(sorted(embedded_only))} only apply to type: embedded"
                " (a work pool's concurrency limit bounds deployed runs)"
            )
        return self


class ReceiverConfig(_Model):
    playbooks: list[str] | None = None  # folders; None means irbook's default folders
    runner: RunnerConfig = RunnerConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)

    @field_validator("runner", mode="before")
    @classmethod
    def _runner_shorthand(cls, value: Any) -> Any:
        # `runner: deployments` is short for `runner: {type: deployments}`.
        if isinstance(value, str) and value in ("embedded", "deployments"):
            return {"type": value}
        if not isinstance(value, dict):
            raise ValueError("expected embedded, deployments or {type: deployments, ...}")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        # Before the values: a bad name is the first thing to fix, and it is the URL path.
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not re.match(SOURCE_NAME, name):
                    raise ValueError(f"source name {name!r} must look like guardduty-prod")
        return value


@dataclass(frozen=True)
class HookSource:
    """A configured source ready to answer: its settings and its verifier (secrets inside)."""

    name: str
    config: SourceConfig
    verifier: Verifier


@dataclass
class LoadedConfig:
    config: ReceiverConfig
    sources: dict[str, HookSource]
    warnings: list[str] = field(default_factory=list)
    path: str = "<config>"


class ConfigError(IrbookError):
    """The receiver's configuration is unusable; one line naming the file and field."""


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _strip_union(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds the union member ("list[str]", "literal['*']") to the location.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p == "str")))


def parse_config(
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    source: Source | None = None,
    path: str = "<config>",
) -> LoadedConfig:
    """Check plain data and build every source's verifier; ConfigError on the first problem."""
    env = os.environ if env is None else env
    where = source.path if source is not None else path

    def located(loc: tuple[Any, ...]) -> Location:
        return source.at(loc) if source is not None else Location(where)

    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'sources' key", located(()))
    try:
        config = ReceiverConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _strip_union(tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown setting"
        raise ConfigError(f"{_dotted(loc)}: {message}", located(loc)) from None
    warnings: list[str] = []
    sources: dict[str, HookSource] = {}
    for name, cfg in config.sources.items():
        base = ("sources", name)
        auth_loc = (*base, "auth")
        settings = cfg.auth.model_dump(exclude_none=True)
        verifier_config: dict[str, Any] = {}
        for key, (target, _) in _ENV_SETTINGS.items():
            if key in settings and target in settings:
                raise ConfigError(
                    f"sources.{name}.auth.{key}: give either {target} or {key}, not both",
                    located((*auth_loc, key)),
                )
        for key, value in settings.items():
            if key in _ENV_SETTINGS:
                target, many = _ENV_SETTINGS[key]
                names = value if many else [value]
                resolved: list[str] = []
                for var in names:
                    secret = env.get(var)
                    if not secret:
                        raise ConfigError(
                            f"sources.{name}.auth.{key}: environment variable {var} is not set",
                            located((*auth_loc, key)),
                        )
                    resolved.append(secret)
                verifier_config[target] = resolved if many else resolved[0]
            else:
                if key in _INLINE_SECRETS:
                    warnings.append(
                        f"{located((*auth_loc, key))}: sources.{name}.auth.{key} holds a secret"
                        f" in the file; prefer {key}_env naming an environment variable"
                    )
                verifier_config[key] = value
        try:
            verifier = build_verifier(verifier_config)
        except AuthConfigError as exc:
            field_name = exc.message.split(":", 1)[0].removeprefix("auth.")
            raise ConfigError(
                f"sources.{name}.{exc.message}", located((*auth_loc, field_name))
            ) from None
        _probe_options(name, cfg, located)
        sources[name] = HookSource(name=name, config=cfg, verifier=verifier)
    return LoadedConfig(config=config, sources=sources, warnings=warnings, path=where)


def _probe_options(name: str, cfg: SourceConfig, located: Any) -> None:
    """Refuse bad normalizer options now rather than at the first real alert.

    Normalizers read their options before the payload, so normalizing an empty object
    raises OptionsError for a bad option and a plain NormalizeError otherwise.
    """
    from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, OptionsError

    try:
        NORMALIZERS[cfg.format]({}, cfg.options)
    except OptionsError as exc:
        raise ConfigError(
            f"sources.{name}.{exc.path}: {exc.reason}", located(("sources", name, "options"))
        ) from None
    except NormalizeError:
        pass


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """The receiver's configuration from a YAML file; ConfigError (path:line:col) if unusable."""
    try:
        source = load_file(path)
    except IrbookError as exc:
        raise ConfigError(exc.message, exc.location) from None
    return parse_config(source.data, env=env, source=source)


__all__ = [
    "AuthSettings",
    "ConfigError",
    "HookSource",
    "LoadedConfig",
    "RateConfig",
    "ReceiverConfig",
    "RunnerConfig",
    "SourceConfig",
    "load_config",
    "parse_config",
]
