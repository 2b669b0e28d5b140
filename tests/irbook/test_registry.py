"""The action registry refuses incomplete declarations at registration, naming the action."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from irbook import plugins
from irbook.registry import (
    REGISTRY,
    ActionContext,
    ActionSpecError,
    PlannedCall,
    Registry,
    RunInfo,
    action,
)


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Loose(BaseModel):
    name: str


class R(BaseModel):
    ok: bool = True


def plan(params: P) -> list[PlannedCall]:
    return [PlannedCall("iam", "DeleteUser", {"UserName": params.name})]


def simulate(params: P, run: RunInfo) -> R:
    return R()


def declare(key: str = "test.thing.do", **kwargs: object) -> Registry:
    registry = Registry()

    def func(ctx: ActionContext, params: P) -> R:
        return R()

    action(key, registry=registry, **kwargs)(func)  # type: ignore[arg-type]
    return registry


def test_a_complete_mutating_action_registers() -> None:
    registry = declare(
        effect="mutate",
        calls=[("iam", "DeleteUser")],
        planner=plan,
        simulate=simulate,
        irreversible="the user is gone",
    )
    spec = registry.find("test.thing.do")
    assert spec is not None
    assert spec.plan(P(name="bob")) == [PlannedCall("iam", "DeleteUser", {"UserName": "bob"})]
    assert spec.on_failure == "abort"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"effect": "mutate", "simulate": simulate, "irreversible": "x"},
            "action 'test.thing.do': needs a planner",
        ),
        (
            {"effect": "mutate", "planner": plan, "irreversible": "x"},
            "action 'test.thing.do': needs a simulated result",
        ),
        (
            {"effect": "mutate", "planner": plan, "simulate": simulate},
            "action 'test.thing.do': a mutating action must name its compensation",
        ),
        (
            {
                "effect": "mutate",
                "planner": plan,
                "simulate": simulate,
                "irreversible": "x",
                "compensation": "test.thing.undo",
            },
            "has both a compensation and an irreversible reason",
        ),
        (
            {"effect": "read", "planner": plan, "simulate": simulate, "compensation": "a.b"},
            "only mutating actions have compensations",
        ),
        ({"effect": "delete", "planner": plan, "simulate": simulate}, "effect must be one of"),
        (
            {
                "effect": "read",
                "planner": plan,
                "simulate": simulate,
                "extra_permissions": {"iam": "x"},
            },
            "permission 'iam' is not of the form 'service:Action'",
        ),
        (
            {"effect": "read", "planner": plan, "simulate": simulate, "calls": ["iam:GetUser"]},
            "call 'iam:GetUser' is not a (service, Operation) pair",
        ),
        (
            {
                "effect": "read",
                "planner": plan,
                "simulate": simulate,
                "calls": [("s3", "GetBucketAcl")],
            },
            "call s3:GetBucketAcl has no known IAM permission",
        ),
        (
            {
                "effect": "read",
                "planner": plan,
                "simulate": simulate,
                "calls": [("iam", "GetUser"), ("iam", "GetUser")],
            },
            "call iam:GetUser is declared twice",
        ),
        (
            {
                "effect": "read",
                "planner": plan,
                "simulate": simulate,
                "extra_permissions": {"iam:PassRole": " "},
            },
            "extra permission 'iam:PassRole' needs its reason",
        ),
        (
            {
                "effect": "read",
                "planner": plan,
                "simulate": simulate,
                "calls": [("iam", "DeleteUser")],
                "extra_permissions": {"iam:DeleteUser": "again"},
            },
            "extra permission 'iam:DeleteUser' already comes from a declared call",
        ),
        (
            {"effect": "read", "pure": True, "calls": [("iam", "GetUser")]},
            "a pure action needs no permissions",
        ),
        ({"effect": "mutate", "pure": True}, "a pure action cannot mutate"),
    ],
)
def test_incomplete_declarations_fail_naming_the_action(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ActionSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        declare(**kwargs)


def test_permissions_are_derived_from_the_calls_then_the_extras() -> None:
    registry = declare(
        effect="mutate",
        calls=[("s3", "PutPublicAccessBlock"), ("apigateway", "UpdateApiKey"), ("iam", "GetUser")],
        extra_permissions={"iam:PassRole": "hands the role to the new instance"},
        planner=plan,
        simulate=simulate,
        irreversible="x",
    )
    spec = registry.get("test.thing.do")
    assert spec.permissions == (
        "s3:PutBucketPublicAccessBlock",
        "apigateway:PATCH",
        "iam:GetUser",
        "iam:PassRole",
    )


def test_an_aws_action_must_declare_its_calls() -> None:
    with pytest.raises(
        ActionSpecError, match=r"action 'aws\.thing\.do': an AWS action must declare"
    ):
        declare("aws.thing.do", effect="read", planner=plan, simulate=simulate)


def test_a_hand_kept_permissions_list_is_refused_saying_what_to_write() -> None:
    """A plugin written before actions declared their calls fails at registration with
    the action named and the new spelling, not with a TypeError from the decorator."""
    with pytest.raises(
        ActionSpecError, match=r"action 'aws\.thing\.do': permissions= is no longer taken"
    ) as caught:
        declare(
            "aws.thing.do",
            effect="read",
            permissions=["iam:GetUser"],
            planner=plan,
            simulate=simulate,
        )
    assert "calls=[('iam', 'UpdateAccessKey'), ...]" in str(caught.value)


def test_a_planned_call_that_is_not_declared_fails_naming_the_action() -> None:
    registry = declare(effect="read", calls=[("iam", "GetUser")], planner=plan, simulate=simulate)
    with pytest.raises(ActionSpecError, match=r"action 'test\.thing\.do': planned iam:DeleteUser"):
        registry.get("test.thing.do").plan(P(name="bob"))


def test_bad_key() -> None:
    with pytest.raises(ActionSpecError, match="'Thing': keys are dotted lowercase"):
        declare("Thing", effect="read", pure=True)


def test_params_must_forbid_extra_fields() -> None:
    registry = Registry()

    def func(ctx: ActionContext, params: Loose) -> R:
        return R()

    with pytest.raises(ActionSpecError, match=r"'test\.loose': Loose must set extra='forbid'"):
        action("test.loose", effect="read", pure=True, registry=registry)(func)  # type: ignore[arg-type]


def test_signature_and_annotations_are_checked() -> None:
    registry = Registry()

    def no_ctx(params: P) -> R:
        return R()

    def untyped(ctx, params):  # type: ignore[no-untyped-def]
        return R()

    with pytest.raises(ActionSpecError, match="must take \\(ctx, params\\)"):
        action("test.a", effect="read", pure=True, registry=registry)(no_ctx)  # type: ignore[arg-type]
    with pytest.raises(ActionSpecError, match="'params' must be annotated"):
        action("test.b", effect="read", pure=True, registry=registry)(untyped)


def test_registering_two_functions_under_one_key_fails() -> None:
    registry = declare(effect="read", pure=True)

    def other(ctx: ActionContext, params: P) -> R:
        return R()

    with pytest.raises(ActionSpecError, match="registered twice"):
        action("test.thing.do", effect="read", pure=True, registry=registry)(other)


def test_compensation_must_exist_and_mutate() -> None:
    registry = declare(
        effect="mutate", planner=plan, simulate=simulate, compensation="test.thing.undo"
    )
    registry._loaded.update(registry.entry_points())  # nothing else to load in this registry
    assert registry.check() == [
        "action 'test.thing.do': compensation 'test.thing.undo' is not registered"
    ]

    def undo(ctx: ActionContext, params: P) -> R:
        return R()

    action("test.thing.undo", effect="read", pure=True, registry=registry)(undo)
    assert registry.check() == [
        "action 'test.thing.do': compensation 'test.thing.undo' is a read action"
    ]


def test_every_shipped_action_is_consistent() -> None:
    """All installed actions load, and every compensation names a mutating action."""
    REGISTRY.load_all()
    assert REGISTRY.check() == []
    keys = REGISTRY.keys()
    assert {"core.note", "core.fail", "core.sleep", "core.approval"} <= set(keys)
    for spec in REGISTRY:
        assert spec.params.model_config.get("extra") == "forbid", spec.key
        if spec.effect == "mutate":
            assert (spec.compensation is None) != (spec.irreversible is None), spec.key


def test_core_actions_behave() -> None:
    ctx = ActionContext()
    note = REGISTRY.get("core.note")
    note.func(ctx, note.params.model_validate({"text": "hello"}))
    assert ctx.notes == ["hello"]
    sleep = REGISTRY.get("core.sleep")
    params = sleep.params.model_validate({"duration": "2m"})
    assert sleep.simulated(params, RunInfo()).model_dump() == {"slept_seconds": 120.0}
    assert sleep.plan(params) == []


def test_entry_points_are_read_from_distribution_metadata(tmp_path: Path) -> None:
    dist = tmp_path / "thirdparty-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [console_scripts]
            x = y:z

            [irbook.actions]
            acme = acme_irbook.actions
            acme2 = acme_irbook.more:register
            """
        )
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        found = plugins.entry_points("irbook.actions")
    finally:
        sys.path.remove(str(tmp_path))
    assert found["acme"] == ["acme_irbook.actions"]
    assert found["acme2"] == ["acme_irbook.more"]
    assert "x" not in found


def test_a_third_party_namespace_loads_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "acme_irbook"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """\
            from pydantic import BaseModel, ConfigDict
            from irbook.registry import ActionContext, action

            class P(BaseModel):
                model_config = ConfigDict(extra="forbid")
                msg: str

            class R(BaseModel):
                msg: str

            @action("acme.echo", effect="read", pure=True)
            def echo(ctx: ActionContext, params: P) -> R:
                return R(msg=params.msg)
            """
        )
    )
    dist = tmp_path / "acme_irbook-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[irbook.actions]\nacme = acme_irbook\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    monkeypatch.setattr("irbook.registry.REGISTRY", registry)
    # the module registers into the global REGISTRY it imports: point that at ours
    import irbook.registry as reg

    monkeypatch.setattr(reg, "REGISTRY", registry)
    spec = registry.find("acme.echo")
    assert spec is not None and spec.summary == ""
    assert spec.module == "acme_irbook"
