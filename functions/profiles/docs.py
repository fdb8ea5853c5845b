"""Generate docs/profiles.md from the profile files: `python -m functions.profiles.docs [--check]`.

The checked-in docs/profiles.md must equal the output (tests/unit/test_profiles.py checks it), so
the table cannot drift from the data the service actually uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from functions.core.catalogue.permissions import resource_label
from functions.core.catalogue.policy import Policy
from functions.core.catalogue.profiles import Profile, ProfileCatalogue
from functions.core.record.durations import format_duration
from functions.core.record.models import GRAPH_APP_ID, PermissionKind
from functions.profiles import load_catalogue
from functions.profiles.views import COMMON_OPTION_DOCS

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _permission_lines(profile: Profile, *, with_conditions: bool = True) -> list[str]:
    by_group: dict[tuple[str, PermissionKind], list[str]] = {}
    for perm in profile.permissions:
        label = perm.name + (f" (if {perm.when})" if perm.when and with_conditions else "")
        by_group.setdefault((perm.resource, perm.kind), []).append(label)
    for option in profile.options:
        if option.grants is not None:
            by_group.setdefault((option.grants[0], option.grants[1]), []).append(
                f"chosen in options.{option.name}"
            )
    return [
        f"{resource_label(res)} ({kind.value}): {', '.join(names)}" for (res, kind), names in by_group.items()
    ]


def _tier0(profile: Profile, policy: Policy) -> list[str]:
    return sorted(
        {p.name for p in profile.permissions if p.resource == GRAPH_APP_ID and policy.is_tier0(p.name)}
    )


def _summary(catalogue: ProfileCatalogue, policy: Policy) -> list[str]:
    lines = [
        "| id | connector | seed | permissions (resource, type) | credentials | options | manual steps | seed corrections / mappings |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in catalogue:
        corrections = [f"{x.seed_spelling} → {x.name}" for x in p.permissions if x.seed_spelling]
        corrections += [f"{seed} → {real}" for o in p.options for real, seed in o.seed_spelling.items()]
        corrections += [
            f"{m.from_resource} {m.from_name} ({m.from_kind.value}) → {resource_label(m.to_resource)} {m.to_name}"
            for m in p.mappings
        ]
        tier0 = _tier0(p, policy)
        perms = "<br>".join(_permission_lines(p)) or "from the request (`permissions`)"
        if tier0:
            perms += f"<br>**tier-0, needs approval:** {', '.join(tier0)}"
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"[`{p.id}`](#{p.id})",
                    p.connector,
                    p.seed or "none",
                    perms,
                    ", ".join(t.value for t in p.credential_types),
                    ", ".join(o.name for o in p.options) or "none",
                    len(p.manual_steps),
                    "<br>".join(dict.fromkeys(corrections)) or "none",
                )
            )
            + " |"
        )
    return lines


def _details(p: Profile, policy: Policy) -> Iterable[str]:
    yield f"## {p.id}"
    yield ""
    yield f"**{p.title}**: {p.description}"
    yield ""
    yield f"- Connector: {p.connector}"
    yield f"- Seed: `{p.seed}`" if p.seed else "- Seed: none (permissions come from the request)"
    yield f"- Sign-in audience: `{p.sign_in_audience}`"
    uris = p.redirect_uris
    shown = [f"{name}: {', '.join(f'`{u}`' for u in v)}" for name, v in
             (("web", uris.web), ("spa", uris.spa), ("publicClient", uris.public_client)) if v]  # fmt: skip
    yield f"- Redirect URIs: {'; '.join(shown) or 'none'}"
    if p.redirect_uri_decision:
        yield f"  - Why: {p.redirect_uri_decision}"
    if p.rotation_lead_time:
        yield f"- Rotation lead time: {format_duration(p.rotation_lead_time)}"
    tier0 = _tier0(p, policy)
    if tier0:
        yield f"- Needs approval under the default policy (tier-0): {', '.join(tier0)}"
    yield from _tables(p)


def _tables(p: Profile) -> Iterable[str]:
    if p.seed_words:
        yield ""
        yield "The seed's own words this profile follows:"
        yield ""
        yield from (f"> {w}  " for w in p.seed_words)
    if p.permissions:
        yield ""
        yield "| resource | type | permission | seed spelling | only when |"
        yield "| --- | --- | --- | --- | --- |"
        for perm in p.permissions:
            yield (
                f"| {resource_label(perm.resource)} (`{perm.resource}`) | {perm.kind.value} | `{perm.name}` | "
                f"{_cell(perm.seed_spelling) if perm.seed_spelling else ''} | "
                f"{f'options.{perm.when} = true' if perm.when else ''} |"
            )
    yield from _credentials_and_options(p)
    yield from _mappings_steps_notes(p)


def _credentials_and_options(p: Profile) -> Iterable[str]:
    yield ""
    yield "| credential | default lifetime | maximum | key size | note |"
    yield "| --- | --- | --- | --- | --- |"
    for rule in p.credentials:
        yield (
            f"| {rule.type.value} | {format_duration(rule.default_lifetime)} | "
            f"{format_duration(rule.max_lifetime) if rule.max_lifetime else 'policy'} | "
            f"{rule.key_size or ''} | {_cell(rule.note or '')} |"
        )
    yield ""
    yield "| option | type | default | allowed | description |"
    yield "| --- | --- | --- | --- | --- |"
    for o in p.options:
        allowed = ", ".join(f"`{a}`" for a in o.allowed)
        if o.seed_spelling:
            allowed += " (seed spelling: " + ", ".join(f"{s} → {r}" for r, s in o.seed_spelling.items()) + ")"
        default = "" if o.default is None else f"`{json.dumps(o.default)}`"
        yield f"| `{o.name}` | {o.type} | {_cell(default)} | {_cell(allowed)} | {_cell(o.description)} |"
    for common in COMMON_OPTION_DOCS.values():
        yield f"| `{common['name']}` | {common['type']} |  |  | {_cell(common['description'])} (every profile) |"


def _mappings_steps_notes(p: Profile) -> Iterable[str]:
    if p.mappings:
        yield ""
        yield "| seed permission | granted as | note |"
        yield "| --- | --- | --- |"
        for m in p.mappings:
            yield (
                f"| {m.from_resource} {m.from_kind.value} `{m.from_name}` | "
                f"{resource_label(m.to_resource)} {m.to_kind.value} `{m.to_name}` | {_cell(m.note)} |"
            )
    if p.manual_steps:
        yield ""
        yield "Manual steps that remain for a person (the API reports them with the registration):"
        yield ""
        for step in p.manual_steps:
            cond = []
            if step.when_credential:
                cond.append("credential " + "/".join(t.value for t in step.when_credential))
            if step.when_option:
                cond.append(f"options.{step.when_option} = true")
            suffix = f" *(only with {', '.join(cond)})*" if cond else ""
            yield f"1. **{step.title}** (`{step.id}`){suffix}: {step.detail}"
    if p.notes:
        yield ""
        yield "Notes:"
        yield ""
        yield from (f"- {n}" for n in p.notes)
    yield ""


def render_markdown(catalogue: ProfileCatalogue, policy: Policy | None = None) -> str:
    policy = policy or Policy()
    lines = [
        "# Connector profiles",
        "",
        "<!-- Generated by `python -m functions.profiles.docs` from functions/profiles/connectors/; "
        "do not edit by hand. -->",
        "",
        "Each profile comes from one vendor guide (a seed) and grants exactly the permissions below; names "
        "resolve to ids through Microsoft Graph in the customer's tenant at run time. Where a seed misspells a "
        "permission the profile stores the correct name and records the seed's spelling. Lifetimes are ISO 8601 "
        "durations (a year counts as 365 days, a month as 30). Seed quotes join a list's items with ' / '. Tier-0 marks follow the default policy "
        "(REGISTRAR_TIER0_PERMISSIONS can change it).",
        "",
        *_summary(catalogue, policy),
        "",
    ]
    for profile in catalogue:
        lines.extend(_details(profile, policy))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if not a.startswith("--")]
    path = Path(paths[0]) if paths else DOC_PATH
    text = render_markdown(load_catalogue())
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            sys.stderr.write(f"{path} is out of date: run python -m functions.profiles.docs\n")
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
