"""The webhook receiver's configuration: which sources may post, and what their posts start.

One YAML file (read with irbook's own loader, so a mistake is reported as path:line:col)
plus the environment, which holds the secrets. A file that names `secret_env: GD_SECRET`
can be committed and reviewed; a file holding the secret itself cannot, so inline secrets
still work (for a laptop demo) but come with a warning.

```yaml
playbooks: [playbooks]          # folders to load playbooks from (default $IRBOOK_PLAYBOOKS)
runner: embedded                # or {type: deployments, prefix: irbook, pool: irbook}
database_url: postgresql://irbook@db:5432/irbook   # $IRBOOK_DATABASE_URL wins
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
failed_auth: {per_second: 5, burst: 20}   # per client address; 429 past it
body_timeout: 10s               # a body not read in full by then is answered 408
metrics: {token_env: IRBOOK_METRICS_TOKEN}  # or {public: true}; off (404) when absent
```

Everything is checked at start-up (secrets present, verifier buildable, normalizer options
accepted, and by `route_playbooks` every playbook trigger producible by some source), so a
receiver that starts is one that can answer. docs/receiver.md is generated from these
models (irbook.triggers.reference), so a field's `description` is its documentation.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

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
from irbook.triggers.auth import SCHEMES, AuthConfigError, Verifier, build_verifier
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
    "password_env": ("password", False),
    "passwords_env": ("passwords", True),
}
_INLINE_SECRETS = tuple(setting for setting, _ in _ENV_SETTINGS.values())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RateConfig(_Model):
    """A token bucket per source: `per_second` sustained, `burst` at once; over it, 429."""

    per_second: float = Field(gt=0, le=100_000, description="Posts per second, sustained.")
    burst: float = Field(ge=1, le=1_000_000, description="Posts accepted at once before 429.")


def _doc(text: str) -> Any:
    return Field(default=None, description=text)


class AuthSettings(_Model):
    """How a source proves itself: a scheme and its settings, secrets named by
    environment variable.

    Which settings a scheme accepts is `build_verifier`'s business; it refuses the rest
    with the setting's name, so a misspelt `header` cannot silently fall back to a default.
    """

    scheme: str = Field(description="How the sender proves itself: " + ", ".join(SCHEMES) + ".")
    secret_env: str | None = _doc("Environment variable holding the HMAC signing secret.")
    secrets_env: list[str] | None = _doc(
        "Several secret variables, old and new, to rotate without dropping deliveries."
    )
    token_env: str | None = _doc("Environment variable holding the static token.")
    tokens_env: list[str] | None = _doc("Several token variables, for rotation.")
    password_env: str | None = _doc("basic: environment variable holding the password.")
    passwords_env: list[str] | None = _doc("basic: several password variables, for rotation.")
    secret: str | None = _doc("The secret itself (a warning: prefer secret_env).")
    secrets: list[str] | None = _doc("The secrets themselves (a warning: prefer secrets_env).")
    token: str | None = _doc("The token itself (a warning: prefer token_env).")
    tokens: list[str] | None = _doc("The tokens themselves (a warning: prefer tokens_env).")
    password: str | None = _doc("basic: the password itself (a warning: prefer password_env).")
    passwords: list[str] | None = _doc("basic: the passwords themselves (prefer passwords_env).")
    username: str | None = _doc("basic: the user name the sender sends (not a secret).")
    header: str | None = _doc(
        "hmac_sha256: the signature header (default X-Hub-Signature-256); api_key: the"
        " token header (default X-API-Key)."
    )
    prefix: str | None = _doc(
        "Text before the value in that header (hmac_sha256 default sha256=, api_key none)."
    )
    param: str | None = _doc("url_token: the query parameter holding the token (default token).")
    delivery_header: str | None = _doc(
        "Header holding the sender's delivery id, for de-duplication of retries."
    )
    tolerance: float | None = _doc(
        "slack, standard_webhooks: seconds a signed timestamp may be off (default 300)."
    )

    @field_validator("secret_env", "token_env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("expected an environment variable name such as IRBOOK_GD_SECRET")
        return value

    @field_validator("secrets_env", "tokens_env", "passwords_env")
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
    """One sender: `POST /hooks/<name>`, its format, its proof of identity and its limits."""

    format: str = Field(description="The payload's format: a key of the formats below.")
    auth: AuthSettings = Field(description="How the sender proves itself (see the schemes).")
    playbooks: list[str] | Literal["*"] = Field(
        default="*", description='Playbook ids this source may start, or "*" for every one.'
    )
    mode: Literal["live", "dry-run"] = Field(
        default="dry-run", description="dry-run until the integration is trusted, then live."
    )
    rate: RateConfig = Field(
        default=RateConfig(per_second=50, burst=200),
        description="Token bucket per source; over it the sender gets 429 and Retry-After.",
    )
    max_body: int = Field(
        default=DEFAULT_BODY_LIMIT,
        ge=1,
        le=MAX_BODY_CEILING,
        description="Largest body accepted, in bytes; larger posts get 413.",
    )
    dedup_window: Duration = Field(
        default=3600.0,
        ge=0,
        le=30 * 86_400,
        description="An alert with the same id within this window (30s, 15m, 1h) counts"
        " as a repeat of the queued one instead of starting a second run.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="The format's options (see each format)."
    )

    def alert_source(self, name: str) -> str:
        """The `source` of this source's alerts, which triggers' `source:` matches:
        its configured name, or `options.source` where one is set."""
        override = self.options.get("source")
        return override if isinstance(override, str) else name

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

    type: Literal["embedded", "deployments"] = Field(
        default="embedded", description="embedded: runs in the receiver; deployments: Prefect."
    )
    prefix: str = Field(
        default="irbook", description="deployments: the deployment is <prefix>-<playbook id>."
    )
    pool: str | None = Field(
        default=None, min_length=1, max_length=100, description="deployments: the work pool."
    )
    max_concurrent_runs: int = Field(
        default=8,
        ge=1,
        le=1_000,
        description="embedded: at most this many runs at once; more alerts wait queued.",
    )
    retry_delays: list[Duration] = Field(
        default=[2.0, 10.0, 30.0],
        max_length=10,
        description="embedded: when Prefect fails to create a flow run, try again after"
        " each of these, then mark the run failed.",
    )

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


class MetricsConfig(_Model):
    """Who may read `GET /metrics`: a bearer token, or anyone (`public: true`).

    The page names every configured source and how often each is refused, so it is not
    served at all unless one of the two is chosen.
    """

    token_env: str | None = None
    public: bool = False

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("expected an environment variable name such as IRBOOK_METRICS_TOKEN")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> MetricsConfig:
        if (self.token_env is None) == (not self.public):
            raise ValueError("give either token_env or public: true")
        return self


class ReceiverConfig(_Model):
    """`irbook serve --config FILE`: the playbook folders, how runs start, the sources."""

    playbooks: list[str] | None = Field(
        default=None, description="Playbook folders (default: $IRBOOK_PLAYBOOKS or playbooks/)."
    )
    runner: RunnerConfig = Field(
        default=RunnerConfig(), description="embedded (default), deployments, or a mapping."
    )
    database_url: str | None = Field(
        default=None,
        min_length=1,
        description="Where irbook keeps its state: sqlite:///PATH or"
        " postgresql://user@host:port/dbname; $IRBOOK_DATABASE_URL wins. Receivers on one"
        " PostgreSQL URL act as one (shared dedup, replay refusal and dispatch). Default:"
        " $IRBOOK_HOME/irbook.db. Keep a password out of this file (IRBOOK_DATABASE_URL,"
        " or ~/.pgpass).",
    )
    policy: str | None = Field(
        default=None,
        min_length=1,
        description="Who may start, approve and roll back runs: an irbook-policy.yaml file"
        " (relative to this file); $IRBOOK_POLICY wins. Without either, no policy is in force.",
    )
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict,
        description="Senders by name; each posts to /hooks/<name>. A name looks like"
        " guardduty-prod: lower-case letters, digits, - and _.",
    )
    failed_auth: RateConfig = Field(
        default=RateConfig(per_second=5, burst=20),
        description="Posts that fail authentication, per client address; they never spend"
        " a source's rate. Past it: 429, no longer logged one by one.",
    )
    body_timeout: Duration = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A body not fully received by then is answered 408 and the connection closed.",
    )
    metrics: MetricsConfig | None = Field(
        default=None,
        description="Who may read GET /metrics: {token_env: NAME} or {public: true};"
        " without it /metrics is 404.",
    )

    @field_validator("runner", mode="before")
    @classmethod
    def _runner_shorthand(cls, value: Any) -> Any:
        # `runner: deployments` is short for `runner: {type: deployments}`.
        if isinstance(value, str) and value in ("embedded", "deployments"):
            return {"type": value}
        if not isinstance(value, dict):
            raise ValueError("expected embedded, deployments or {type: deployments, ...}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None:
            from irbook.db import DatabaseUrlError, check_url

            try:
                check_url(value, "database_url")
            except DatabaseUrlError as exc:  # the location already names the field
                raise ValueError(str(exc).removeprefix("database_url: ")) from None
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
    metrics_token: str | None = None  # from metrics.token_env; None: no token asked


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
    if config.database_url is not None and re.search(r"://[^/@]*:[^/@]*@", config.database_url):
        warnings.append(
            f"{located(('database_url',))}: database_url holds a password in the file; put"
            " the URL in IRBOOK_DATABASE_URL or the password in ~/.pgpass"
        )
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
    metrics_token = None
    if config.metrics is not None and config.metrics.token_env is not None:
        metrics_token = env.get(config.metrics.token_env)
        if not metrics_token:
            raise ConfigError(
                f"metrics.token_env: environment variable {config.metrics.token_env} is not set",
                located(("metrics", "token_env")),
            )
    return LoadedConfig(
        config=config,
        sources=sources,
        warnings=warnings,
        path=where,
        metrics_token=metrics_token,
    )


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


class _Routable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def triggers(self) -> tuple[Any, ...]: ...


P = TypeVar("P", bound=_Routable)


@dataclass
class Routes(Generic[P]):
    """Which playbooks each source may start, with their triggers as the receiver reads
    them (a deprecated `source: <format>` rewritten to `format:`), and start-up warnings."""

    per_source: dict[str, list[P]]
    warnings: list[str] = field(default_factory=list)


def route_playbooks(loaded: LoadedConfig, playbooks: Sequence[P]) -> Routes[P]:
    """Check the playbooks against the sources before the receiver starts.

    A trigger that no source routed to its playbook can produce would never fire: a
    misspelt source name, or a playbook source that lists other playbooks. The post
    would get 200 no-match and nobody would notice, so it is refused here, naming the
    trigger and the sources. `playbooks` must be dataclasses (their triggers are
    replaced by the ones the receiver matches).
    """
    from irbook.model import Trigger
    from irbook.triggers.normalizers import NORMALIZERS

    sources = loaded.sources
    names = {src.config.alert_source(name) for name, src in sources.items()}
    known = {pb.id: pb for pb in playbooks}
    served: dict[str, list[str]] = {}  # playbook id -> the sources that may start it
    per_source: dict[str, list[P]] = {}
    for name, src in sources.items():
        wanted = src.config.playbooks
        if wanted == "*":
            chosen = list(playbooks)
        else:
            missing = [pid for pid in wanted if pid not in known]
            if missing:
                raise ConfigError(
                    f"sources.{name}.playbooks: no playbook with id '{missing[0]}' in the"
                    " playbook folders",
                    Location(loaded.path),
                )
            chosen = [known[pid] for pid in wanted]
        per_source[name] = chosen
        for pb in chosen:
            served.setdefault(pb.id, []).append(name)
    warnings: list[str] = []
    resolved: dict[str, P] = {}
    for pb in playbooks:
        if pb.id not in served:
            continue  # no source may start it: not this receiver's playbook
        triggers = []
        for index, trigger in enumerate(pb.triggers):
            where = f"playbook {pb.id} triggers[{index}]"
            if (
                trigger.source is not None
                and trigger.format is None
                and trigger.source not in names
                and trigger.source in NORMALIZERS
            ):
                warnings.append(
                    f"{where}: source: {trigger.source} names a format, not a configured"
                    f" source; it matches every {trigger.source} source (deprecated: write"
                    f" format: {trigger.source}, or source: one of {', '.join(sorted(names))})"
                )
                trigger = Trigger(format=trigger.source, match=trigger.match)
            able = [
                name
                for name in served[pb.id]
                if (trigger.source in (None, sources[name].config.alert_source(name)))
                and (trigger.format in (None, sources[name].config.format))
            ]
            if not able:
                offered = ", ".join(
                    f"{name} (format {sources[name].config.format})" for name in served[pb.id]
                )
                raise ConfigError(
                    f"{where}: no configured source can produce {trigger.origin()};"
                    f" the sources that may start {pb.id} are {offered}",
                    _trigger_at(getattr(pb, "path", None), index, loaded.path),
                )
            triggers.append(trigger)
        resolved[pb.id] = dataclasses.replace(pb, triggers=tuple(triggers))  # type: ignore[type-var]
    return Routes(
        {name: [resolved[pb.id] for pb in chosen] for name, chosen in per_source.items()},
        warnings,
    )


def _trigger_at(path: str | None, index: int, fallback: str) -> Location:
    """Where a playbook's trigger is written, read again only to say so."""
    if path is None:
        return Location(fallback)
    try:
        return load_file(path).at(("triggers", index))
    except IrbookError:
        return Location(path)


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
    "MetricsConfig",
    "RateConfig",
    "ReceiverConfig",
    "Routes",
    "RunnerConfig",
    "SourceConfig",
    "load_config",
    "parse_config",
    "route_playbooks",
]
