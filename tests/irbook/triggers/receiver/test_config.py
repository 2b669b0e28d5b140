"""The receiver's configuration: defaults, secrets from the environment, one-line errors."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from irbook.triggers.app import HookPlaybook, WebhookReceiver, load_playbooks
from irbook.triggers.config import ConfigError, Routes, load_config, route_playbooks
from tests.support.receiver import RecordingStarter, write_fixture

ENV = {"GD_TOKEN": "a-token-value", "GH_SECRET": "s1", "GH_OLD": "s0"}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "receiver.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def error_of(tmp_path: Path, text: str, env: dict[str, str] = ENV) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_safe(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_TOKEN}
        """,
    )
    loaded = load_config(path, env=ENV)
    source = loaded.sources["gd"].config
    assert source.mode == "dry-run"
    assert source.max_body == 1024 * 1024
    assert source.dedup_window == 3600.0
    assert source.playbooks == "*"
    assert loaded.warnings == []
    assert loaded.sources["gd"].verifier.verify({"X-API-Key": "a-token-value"}, b"", 0.0)


def test_rotation_list_durations_and_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          gh:
            format: guardduty
            auth: {scheme: hmac_sha256, secrets_env: [GH_SECRET, GH_OLD]}
            playbooks: [cred-exfil]
            mode: live
            rate: {per_second: 2, burst: 5}
            dedup_window: 15m
            options: {source: guardduty-prod}
        """,
    )
    source = load_config(path, env=ENV).sources["gh"].config
    assert source.dedup_window == 900.0
    assert source.playbooks == ["cred-exfil"]
    assert source.rate.burst == 5


def test_missing_environment_variable_names_the_field_and_line(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: NOT_SET}
        """,
    )
    assert "receiver.yaml:4:" in message
    assert "sources.gd.auth.token_env: environment variable NOT_SET is not set" in message


def test_unknown_setting_and_format(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_TOKEN}
            mood: live
        """,
    )
    assert "sources.gd.mood: unknown setting" in message and ":5:" in message
    message = error_of(
        tmp_path,
        """\
        sources:
          gd:
            format: qradar
            auth: {scheme: api_key, token_env: GD_TOKEN}
        """,
    )
    assert "sources.gd.format: unknown format" in message


def test_scheme_settings_are_checked_by_the_verifier(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """\
        sources:
          gh:
            format: guardduty
            auth: {scheme: hmac_sha256, token_env: GD_TOKEN}
        """,
    )
    assert "sources.gh.auth.token: is not a setting of scheme hmac_sha256" in message


def test_inline_secret_works_with_a_warning_and_not_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          gh:
            format: guardduty
            auth: {scheme: hmac_sha256, secret: inline-secret}
        """,
    )
    loaded = load_config(path, env=ENV)
    (warning,) = loaded.warnings
    assert "secret_env" in warning and "inline-secret" not in warning
    message = error_of(
        tmp_path,
        """\
        sources:
          gh:
            format: guardduty
            auth: {scheme: hmac_sha256, secret: x, secret_env: GH_SECRET}
        """,
    )
    assert "give either secret or secret_env" in message


def test_bad_values_and_normalizer_options(tmp_path: Path) -> None:
    base = """\
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_TOKEN}
        """
    assert "sources.gd.mode" in error_of(tmp_path, base + "    mode: yolo\n")
    assert "sources.gd.max_body" in error_of(tmp_path, base + "    max_body: 0\n")
    assert "sources.gd.dedup_window" in error_of(tmp_path, base + "    dedup_window: soon\n")
    assert "sources.gd.options.colour" in error_of(tmp_path, base + "    options: {colour: red}\n")
    assert "source name" in error_of(tmp_path, "sources: {Bad Name: {}}\n")
    assert "invalid YAML" in error_of(tmp_path, "sources: [\n")


def test_receiver_refuses_unknown_playbook_and_broken_playbooks(tmp_path: Path) -> None:
    _config, books = write_fixture(tmp_path)
    path = write(
        tmp_path,
        f"""\
        playbooks: ["{books}"]
        sources:
          gd:
            format: guardduty
            auth: {{scheme: api_key, token_env: GD_TOKEN}}
            playbooks: [no-such-playbook]
        """,
    )
    loaded = load_config(path, env=ENV)
    with pytest.raises(ConfigError, match=r"sources\.gd\.playbooks: no playbook with id .no-such"):
        WebhookReceiver(loaded, RecordingStarter(), db_path=str(tmp_path / "q.db"))
    (books / "broken.yaml").write_text("apiVersion: irbook/v1\nkind: Playbook\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_playbooks([str(books)])


def test_runner_defaults_to_embedded_and_takes_deployments(tmp_path: Path) -> None:
    sources = "sources: {gd: {format: guardduty, auth: {scheme: api_key, token_env: GD_TOKEN}}}\n"
    runner = load_config(write(tmp_path, sources), env=ENV).config.runner
    assert runner.type == "embedded"
    short = load_config(write(tmp_path, "runner: deployments\n" + sources), env=ENV)
    assert (short.config.runner.type, short.config.runner.prefix) == ("deployments", "irbook")
    text = "runner: {type: deployments, pool: ir-pool, prefix: ir}\n" + sources
    full = load_config(write(tmp_path, text), env=ENV).config.runner
    assert (full.type, full.pool, full.prefix) == ("deployments", "ir-pool", "ir")


def test_runner_errors_are_one_line_with_a_location(tmp_path: Path) -> None:
    assert re.search(
        r"receiver\.yaml:1:9: .*runner: expected embedded, deployments",
        error_of(tmp_path, "runner: kubernetes\nsources: {}\n"),
    )
    assert "runner.type: Input should be 'embedded' or 'deployments'" in error_of(
        tmp_path, "runner: {type: kube}\nsources: {}\n"
    )
    assert "runner.pol: unknown setting" in error_of(
        tmp_path, "runner: {type: deployments, pol: x}\nsources: {}\n"
    )
    assert "runner.prefix: expected a lowercase name" in error_of(
        tmp_path, "runner: {type: deployments, prefix: My Prefix}\nsources: {}\n"
    )
    assert "runner: prefix and pool only apply to type: deployments" in error_of(
        tmp_path, "runner: {pool: irbook}\nsources: {}\n"
    )


def routes_of(tmp_path: Path, sources: str, triggers: dict[str, str]) -> Routes[HookPlaybook]:
    books = tmp_path / "books"
    books.mkdir(parents=True, exist_ok=True)
    for pid, origin in triggers.items():
        (books / f"{pid}.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: irbook/v1
                kind: Playbook
                metadata: {{id: {pid}, title: {pid}}}
                triggers:
                  - {origin}
                steps:
                  - {{id: note, action: core.note, with: {{text: hi}}}}
                """
            ),
            encoding="utf-8",
        )
    loaded = load_config(write(tmp_path, "sources:\n" + textwrap.indent(sources, "  ")), env=ENV)
    return route_playbooks(loaded, load_playbooks([str(books)]))


GD = "format: guardduty\nauth: {scheme: api_key, token_env: GD_TOKEN}\n"


def test_a_format_name_in_source_still_matches_with_a_deprecation_warning(tmp_path: Path) -> None:
    routes = routes_of(
        tmp_path, "gd-prod:\n" + textwrap.indent(GD, "  "), {"old": "source: guardduty"}
    )
    (warning,) = routes.warnings
    assert "playbook old triggers[0]: source: guardduty names a format" in warning
    assert "format: guardduty" in warning and "gd-prod" in warning
    (trigger,) = routes.per_source["gd-prod"][0].triggers
    assert (trigger.source, trigger.format) == (None, "guardduty")


def test_a_source_named_like_a_format_is_matched_by_name_without_warning(tmp_path: Path) -> None:
    sources = "guardduty:\n" + textwrap.indent(GD, "  ") + "other:\n" + textwrap.indent(GD, "  ")
    routes = routes_of(tmp_path, sources, {"named": "source: guardduty"})
    assert routes.warnings == []
    (trigger,) = routes.per_source["other"][0].triggers
    assert (trigger.source, trigger.format) == ("guardduty", None)


def test_options_source_is_the_name_triggers_match(tmp_path: Path) -> None:
    sources = "gd:\n" + textwrap.indent(GD + "options: {source: guardduty-prod}\n", "  ")
    routes = routes_of(tmp_path, sources, {"prod": "source: guardduty-prod"})
    assert routes.warnings == []
    with pytest.raises(
        ConfigError,
        match=r"playbook x triggers\[0\]: no configured source can"
        r" produce source gd; the sources that may start x are gd",
    ):
        routes_of(tmp_path / "again", sources, {"x": "source: gd"})


def test_a_source_listing_other_playbooks_cannot_produce_a_trigger(tmp_path: Path) -> None:
    sources = (
        "gd-prod:\n"
        + textwrap.indent(GD + "playbooks: [other]\n", "  ")
        + "gd-dev:\n"
        + textwrap.indent(GD, "  ")
    )
    with pytest.raises(
        ConfigError, match=r"produce source gd-prod; .* are gd-dev \(format guardduty\)"
    ):
        routes_of(tmp_path, sources, {"prod": "source: gd-prod", "other": "format: guardduty"})


def test_basic_scheme_settings(tmp_path: Path) -> None:
    env = {**ENV, "EB_PASSWORD": "pw"}
    text = """\
        sources:
          eb:
            format: guardduty
            auth: {scheme: basic, username: irbook, password_env: EB_PASSWORD}
        """
    assert load_config(write(tmp_path, text), env=env).sources["eb"].verifier.scheme == "basic"
    message = error_of(tmp_path, text.replace("username: irbook, ", ""), env)
    where = r"receiver\.yaml:4:\d+: error: sources\.eb\.auth\.username: is required"
    assert re.search(where, message)
    message = error_of(tmp_path, text, ENV)
    assert "sources.eb.auth.password_env: environment variable EB_PASSWORD is not set" in message
    inline = load_config(write(tmp_path, text.replace("password_env: EB_PASSWORD", "password: x")))
    assert "prefer password_env" in inline.warnings[0]
