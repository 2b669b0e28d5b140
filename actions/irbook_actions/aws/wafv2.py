"""Block source addresses with an AWS WAF IP set that a web ACL already references.

The playbook names the IP set; the web ACL rule that blocks its addresses is configuration
the team owns. Adding addresses is then one call that takes effect within seconds, and
removing exactly the added ones undoes it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, field_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, action
from irbook_actions.aws._base import (
    AwsParams,
    AwsResult,
    call,
    client,
    from_call,
    if_set,
)

MAX_ADDRESSES = 10_000  # AWS WAF's limit per IP set
Scope = Literal["REGIONAL", "CLOUDFRONT"]


class IpSetParams(AwsParams):
    ip_set_name: str = Field(pattern=r"^[\w-]+$", max_length=128, description="the IP set's name")
    scope: Scope = Field("REGIONAL", description="REGIONAL, or CLOUDFRONT (always us-east-1)")
    addresses: list[str] = Field(
        max_length=MAX_ADDRESSES,
        description="IP addresses or CIDR ranges (an empty list, as from an alert without "
        "addresses, does nothing)",
    )

    @field_validator("addresses")
    @classmethod
    def as_cidrs(cls, values: list[str]) -> list[str]:
        """WAF stores CIDRs: 198.51.100.23 becomes 198.51.100.23/32; duplicates go."""
        out: list[str] = []
        for value in values:
            try:
                network = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR range") from None
            if str(network) not in out:
                out.append(str(network))
        return out


class IpSetResult(AwsResult):
    ip_set_name: str
    ip_set_id: str
    ip_set_arn: str
    scope: Scope
    changed: list[str] = Field(default_factory=list, description="addresses this step changed")
    unchanged: list[str] = Field(
        default_factory=list, description="addresses that were already in the wanted state"
    )


def _waf(ctx: ActionContext, scope: Scope) -> Any:
    """CloudFront-scoped WAF resources live in us-east-1 whatever the step's region."""
    return client(ctx, "wafv2", "us-east-1" if scope == "CLOUDFRONT" else None)


def _find(waf: Any, name: str, scope: Scope) -> dict[str, Any]:
    what = f"WAF IP set {name} ({scope})"
    marker: str | None = None
    for _ in range(100):
        kwargs: dict[str, Any] = {"Scope": scope}
        if marker:
            kwargs["NextMarker"] = marker
        page = call(waf, "ListIPSets", what, **kwargs)
        for summary in page.get("IPSets", []):
            if summary.get("Name") == name:
                return dict(summary)
        marker = page.get("NextMarker")
        if not marker or not page.get("IPSets"):
            break
    raise ActionFailed(f"{what} not found")


def _change(ctx: ActionContext, params: IpSetParams, add: bool) -> IpSetResult:
    if not params.addresses:
        return IpSetResult(
            ip_set_name=params.ip_set_name,
            ip_set_id="",
            ip_set_arn="",
            scope=params.scope,
            already_done=True,
        )
    waf = _waf(ctx, params.scope)
    summary = _find(waf, params.ip_set_name, params.scope)
    what = f"WAF IP set {params.ip_set_name} ({params.scope})"
    ids = {"Name": params.ip_set_name, "Scope": params.scope, "Id": summary["Id"]}
    for _ in range(3):  # another writer between our read and write: read again
        answer = call(waf, "GetIPSet", what, **ids)
        ip_set = answer["IPSet"]
        current = list(ip_set.get("Addresses", []))
        version = ip_set.get("IPAddressVersion", "IPV4")
        wrong = [a for a in params.addresses if _version(a) != version]
        if wrong:
            raise ActionFailed(f"{what} holds {version} addresses; {', '.join(wrong)} cannot go in")
        if add:
            changed = [a for a in params.addresses if a not in current]
            wanted = current + changed
        else:
            changed = [a for a in params.addresses if a in current]
            wanted = [a for a in current if a not in changed]
        result = IpSetResult(
            ip_set_name=params.ip_set_name,
            ip_set_id=str(summary["Id"]),
            ip_set_arn=str(ip_set.get("ARN", summary.get("ARN", ""))),
            scope=params.scope,
            changed=changed,
            unchanged=[a for a in params.addresses if a not in changed],
            already_done=not changed,
        )
        if not changed:
            return result
        if len(wanted) > MAX_ADDRESSES:
            raise ActionFailed(f"{what} would hold {len(wanted)} addresses; WAF allows 10000")
        update: dict[str, Any] = {
            **ids,
            "Addresses": wanted,
            "LockToken": answer["LockToken"],
        }
        if ip_set.get("Description"):  # UpdateIPSet replaces everything it is not given
            update["Description"] = ip_set["Description"]
        if call(waf, "UpdateIPSet", what, absent=("WAFOptimisticLockException",), **update):
            verb = "blocked" if add else "unblocked"
            ctx.note(f"{what}: {verb} {', '.join(changed)}")
            return result
    raise ActionFailed(f"{what} kept changing under us; try again")


def _version(cidr: str) -> str:
    return "IPV6" if ipaddress.ip_network(cidr).version == 6 else "IPV4"


def _plan(params: IpSetParams, add: bool) -> list[PlannedCall]:
    ids = {"Name": params.ip_set_name, "Scope": params.scope, "Id": from_call("wafv2:ListIPSets")}
    change = "plus" if add else "minus"
    return [
        PlannedCall(
            "wafv2",
            "ListIPSets",
            {"Scope": params.scope, "NextMarker": if_set("wafv2:ListIPSets")},
            note="finds the IP set's id by name (repeated with NextMarker on large accounts)",
        ),
        PlannedCall("wafv2", "GetIPSet", ids, note="reads the addresses and the lock token"),
        PlannedCall(
            "wafv2",
            "UpdateIPSet",
            {
                **ids,
                "Addresses": from_call("wafv2:GetIPSet", f"{change} {', '.join(params.addresses)}"),
                "LockToken": from_call("wafv2:GetIPSet"),
                "Description": if_set("wafv2:GetIPSet"),
            },
            note="skipped when nothing changes",
        ),
    ]


_CALLS = [("wafv2", "ListIPSets"), ("wafv2", "GetIPSet"), ("wafv2", "UpdateIPSet")]


@action(
    "aws.wafv2.block_ips",
    effect="mutate",
    calls=_CALLS,
    planner=lambda p: _plan(p, add=True) if p.addresses else [],
    simulate=lambda p, run: IpSetResult(
        ip_set_name=p.ip_set_name,
        ip_set_id=from_call("wafv2:ListIPSets"),
        ip_set_arn=from_call("wafv2:ListIPSets"),
        scope=p.scope,
        changed=list(p.addresses),
        already_done=not p.addresses,
    ),
    compensation="aws.wafv2.unblock_ips",
    undo=lambda p, r: {
        "ip_set_name": p.ip_set_name,
        "scope": p.scope,
        "addresses": list(r.changed) if r is not None else list(p.addresses),
    },
    idempotent=True,
)
def block_ips(ctx: ActionContext, params: IpSetParams) -> IpSetResult:
    """Add addresses to a WAF IP set that a web ACL blocks; addresses already there stay."""
    return _change(ctx, params, add=True)


@action(
    "aws.wafv2.unblock_ips",
    effect="mutate",
    calls=_CALLS,
    planner=lambda p: _plan(p, add=False) if p.addresses else [],
    simulate=lambda p, run: IpSetResult(
        ip_set_name=p.ip_set_name,
        ip_set_id=from_call("wafv2:ListIPSets"),
        ip_set_arn=from_call("wafv2:ListIPSets"),
        scope=p.scope,
        changed=list(p.addresses),
        already_done=not p.addresses,
    ),
    compensation="aws.wafv2.block_ips",
    undo=lambda p, r: {
        "ip_set_name": p.ip_set_name,
        "scope": p.scope,
        "addresses": list(r.changed) if r is not None and r.changed else list(p.addresses),
    },
    idempotent=True,
)
def unblock_ips(ctx: ActionContext, params: IpSetParams) -> IpSetResult:
    """Take exactly the given addresses out of a WAF IP set; others someone added stay."""
    return _change(ctx, params, add=False)
