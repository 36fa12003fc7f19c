"""The admin page (``/admin``): teams, their versions, users and budgets, usage charts, the audit log.

Pages are HTML made on the server (no script; forms post back here), served behind the same login
cookie and with the same Content-Security-Policy as the chat page (``guard.PageHardening`` wraps
every HTML response). Every request checks, in the database, that its login is still valid and
that its account is an admin, so a demotion or a logout counts at once on every worker. Forms
carry a token derived from the login (CSRF), and every change is written to the audit log.

A team's changes are versions (:mod:`chorus.store.team_versions`) laid over its team file
(:mod:`chorus.teams.overlay`); new conversations use the newest version without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from chorus.auth import SECRET_ENV
from chorus.store import audit, team_versions
from chorus.store.accounts import is_admin, list_accounts
from chorus.store.analytics import spent_today, usage_report
from chorus.store.usage import UsageLedger
from chorus.teams.overlay import (
    PatchError,
    TeamPatch,
    apply_patch,
    describe,
    diff,
    effective,
    intended_members,
    intended_tools,
    parse_patch,
)
from chorus.teams.spec import TeamSpec
from chorus.web import charts, logins
from chorus.web.context import current
from chorus.web.guard import request_token

log = logging.getLogger("chorus.app")

PREFIX = "/admin"
POLICY = "; ".join([  # the chat page's policy (guard.harden_html), stricter: no script at all, never framed
    "default-src 'self'", "script-src 'none'", "style-src 'self'", "img-src 'self' data:", "font-src 'self' data:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"])
MAX_VERSION = 1_000_000


def routes() -> list[Route]:
    return [
        Route(PREFIX, teams_page),
        Route(PREFIX + "/teams/{team}", team_page),
        Route(PREFIX + "/teams/{team}", save_team, methods=["POST"]),
        Route(PREFIX + "/teams/{team}/rollback", rollback_team, methods=["POST"]),
        Route(PREFIX + "/users", users_page),
        Route(PREFIX + "/users/{name}/budget", reset_budget, methods=["POST"]),
        Route(PREFIX + "/usage", usage_page),
        Route(PREFIX + "/audit", audit_page),
    ]


# --- who may come in ------------------------------------------------------------------------------

class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _admin(request: Request) -> tuple[str, str]:
    """(the admin's name, the form token), or :class:`_Refused` with the answer for everyone else."""
    web = current()
    if not web.history:
        raise _Refused(_page("Admin", "<p>The admin page needs accounts. Add one with "
                                      "<code>chorus users add NAME --admin</code> and restart.</p>", status=404))
    token = request_token(request.scope)
    engine = web.engine()
    if not token or not await logins.still_valid(engine, token):
        raise _Refused(RedirectResponse("/login", status_code=303))
    claims = logins.claims_of(token) or {}
    found = claims.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, dict) else {}
    name = str(claims.get("identifier") or "")
    if metadata.get("provider") != logins.PASSWORD or not await is_admin(engine, name):
        raise _Refused(_page("Admins only", "<p>This page is for admins. An admin can make you one with "
                                            "<code>chorus users promote NAME</code>.</p>", status=403))
    return name, _form_token(token)


def _form_token(login: str) -> str:
    secret = os.environ.get(SECRET_ENV, "")
    return hmac.new(secret.encode(), b"admin-form:" + login.encode(), hashlib.sha256).hexdigest()[:40]


async def _admin_post(request: Request) -> tuple[str, Mapping[str, Any]]:
    """The admin and the form of a POST whose CSRF token is right."""
    name, token = await _admin(request)
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")), token):
        raise _Refused(_page("Refused", "<p>This form is out of date or came from another site. Reload the page "
                                        "and try again.</p>", status=403))
    return name, form


def admin_only(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _Refused as refused:
            return refused.response
    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


# --- layout ---------------------------------------------------------------------------------------

NAV = (("Teams", PREFIX), ("Users", PREFIX + "/users"), ("Usage", PREFIX + "/usage"), ("Audit log", PREFIX + "/audit"))


def _page(title: str, body: str, *, status: int = 200, admin: str | None = None, flash: str = "",
          error: str = "") -> HTMLResponse:
    nav = "".join(f'<a href="{href}">{escape(label)}</a>' for label, href in NAV) if admin else ""
    who = f'<span class="who">{escape(admin)}</span>' if admin else ""
    notes = (f'<p class="flash" role="status">{escape(flash)}</p>' if flash else "") + (
        f'<p class="error" role="alert">{escape(error)}</p>' if error else "")
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · Chorus admin</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/chorus/static/admin.css"></head><body>'
            f'<header><a class="home" href="/">← Chat</a><nav>{nav}</nav>{who}</header>'
            f"<main><h1>{escape(title)}</h1>{notes}{body}</main></body></html>")
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                                            "content-security-policy": POLICY})


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(token, quote=True)}">'


# --- teams ----------------------------------------------------------------------------------------

@admin_only
async def teams_page(request: Request) -> Response:
    """Every team with the version its new conversations use."""
    name, _ = await _admin(request)
    chorus = current().chorus
    await chorus.overlays.refresh(current().engine())
    rows = []
    for spec in chorus.catalog.teams.values():
        version = chorus.overlays.version(spec.name)
        members = ", ".join(m["name"] for m in effective(chorus.team(spec.name), chorus.registry,
                                                          chorus.settings.model)["members"])
        rows.append(f'<tr><td><a href="{PREFIX}/teams/{quote(spec.name)}">{escape(spec.title)}</a></td>'
                    f"<td>{escape(spec.type)}</td><td>{escape(members)}</td>"
                    f"<td>{'version ' + str(version) if version else 'team file'}</td></tr>")
    body = ("<p>Changes made here are versions on top of each team's file; new conversations use the newest "
            "version at once, and any earlier one can be restored.</p>"
            "<table><thead><tr><th>Team</th><th>Type</th><th>Members</th><th>In use</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
    return _page("Teams", body, admin=name)


def _team(team: str) -> TeamSpec:
    chorus = current().chorus
    if team not in chorus.catalog.teams:
        raise _Refused(_page("No such team", f"<p>There is no team called {escape(team)!s}.</p>", status=404))
    return chorus.catalog.teams[team]


@admin_only
async def team_page(request: Request) -> Response:
    name, token = await _admin(request)
    base = _team(request.path_params["team"])
    return await _render_team(base, name, token, flash=_flash(request.query_params))


def _flash(query: Mapping[str, str]) -> str:
    """The message after a save or a rollback, made here from numbers (never text from the address)."""
    done, number, to = query.get("done", ""), _number(query.get("v")), _number(query.get("to"))
    if done == "saved" and number:
        return f"Saved version {number}: new conversations use it."
    if done == "same":
        return "Nothing changed."
    if done == "rolled" and number is not None and to is not None:
        target = "the team file" if to == 0 else f"version {to}"
        return f"Rolled back to {target} (saved as version {number})." if number else \
            f"The team is already as {target} had it."
    return ""


def _number(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit() or len(text.strip()) > 7:
        return None
    return int(text.strip())


async def _render_team(base: TeamSpec, admin: str, token: str, *, flash: str = "", error: str = "",
                       status: int = 200) -> Response:
    web = current()
    chorus = web.chorus
    await chorus.overlays.refresh(web.engine())
    spec = chorus.team(base.name)
    version = chorus.overlays.version(base.name)
    tools = sorted(chorus.registry.tools)
    stored = await team_versions.versions(web.engine(), base.name)
    patch = parse_patch(stored[0].patch) if stored else TeamPatch()
    if stored and version == stored[0].version and spec is base and not patch.is_empty():
        try:
            apply_patch(base, patch, chorus.registry)
        except PatchError as exc:
            error = error or f"Version {version} no longer applies ({exc}): new conversations use the team file."
    chosen = intended_members(base, patch, chorus.registry)
    now = {m["name"]: m for m in effective(spec, chorus.registry, chorus.settings.model)["members"]}
    in_file = {m["name"]: m for m in effective(base, chorus.registry, chorus.settings.model)["members"]}
    candidates = chosen + [n for n in in_file if n not in chosen]
    candidates += [n for n, a in chorus.registry.agents.items() if n not in candidates and not a.team_only]

    cards = []
    for position, agent in enumerate(candidates, start=1):
        info = dict(now.get(agent) or _agent_info(agent, base))
        if agent not in now and agent in patch.agents:  # chosen, but its plugin is off: the admin's settings
            info.update({k: v for k, v in patch.agents[agent].model_dump().items() if v is not None and k != "tools"})
        given = intended_tools(agent, base, patch, chorus.registry)
        on = agent in chosen
        off = " (its plugin is off in this team)" if on and agent not in now else ""
        tool_boxes = "".join(
            f'<label class="tool"><input type="checkbox" name="tool:{escape(agent)}" value="{escape(t)}"'
            f'{" checked" if t in given else ""}> {escape(t)}</label>' for t in tools)
        temperature = "" if info.get("temperature") is None else str(info["temperature"])
        cards.append(
            f'<fieldset class="agent" id="agent-{escape(agent)}"><legend>'
            f'<label><input type="checkbox" name="member" value="{escape(agent)}"{" checked" if on else ""}> '
            f'{escape(agent)}</label> <span class="plugin">{escape(info.get("plugin") or "")}{escape(off)}</span>'
            f'</legend><label class="order">Position<input name="order:{escape(agent)}" value="{position}" '
            f'inputmode="numeric"></label>'
            f'<label>System prompt<textarea name="prompt:{escape(agent)}" rows="6">'
            f'{escape(info.get("system_message") or "")}</textarea></label>'
            f'<div class="row"><label>Model<input name="model:{escape(agent)}" '
            f'value="{escape(info.get("model") or "")}"></label>'
            f'<label>Temperature<input name="temperature:{escape(agent)}" value="{escape(temperature)}" '
            f'inputmode="decimal" placeholder="provider default"></label></div>'
            f'<div class="tools">Tools: {tool_boxes or "none registered"}</div></fieldset>')
    plugins = "".join(
        f'<label class="tool"><input type="checkbox" name="plugin_on" value="{escape(r.name)}"'
        f'{"" if r.name in patch.disabled_plugins else " checked"}> {escape(r.name)}</label>'
        for r in chorus.registry.reports if r.status == "ok")
    team_tools = "".join(
        f'<label class="tool"><input type="checkbox" name="tool_on" value="{escape(t)}"'
        f'{"" if t in patch.disabled_tools else " checked"}> {escape(t)}</label>' for t in tools)
    term = spec.termination
    form = (
        f'<form method="post" action="{PREFIX}/teams/{quote(base.name)}" class="team">{_csrf(token)}'
        f'<input type="hidden" name="version" value="{version}">'
        '<h2>Members</h2><p class="hint">Checked agents are in the team, in this order.</p>'
        f'{"".join(cards)}'
        f'<h2>Plugins and tools in this team</h2><div class="tools">Plugins: {plugins}</div>'
        f'<div class="tools">Tools: {team_tools}</div>'
        '<h2>Termination</h2><div class="row">'
        f'<label>Most messages per turn<input name="max_messages" inputmode="numeric" '
        f'value="{"" if term.max_messages is None else term.max_messages}" placeholder="the team type\'s"></label>'
        f'<label>Stop when a reply says<input name="text_mention" value="{escape(term.text_mention or "")}"></label>'
        '</div><label>What changed and why<input name="note" maxlength="300"></label>'
        '<button type="submit">Save as a new version</button></form>')
    history = [_version_item(v, base.name, token, current_version=version) for v in stored]
    history.append(f'<li><strong>Team file</strong> (version 0: {escape(base.source or "from its plugin")})'
                   + (_rollback_button(base.name, 0, token, version) if version else " <em>in use</em>") + "</li>")
    body = (f'<p>Type <code>{escape(spec.type)}</code>. New conversations use '
            f'{"version " + str(version) if version else "the team file"}.</p>'
            f'<div class="columns"><section>{form}</section><section><h2>Versions</h2>'
            f'<ol class="versions">{"".join(history)}</ol></section></div>')
    return _page(f"Team {spec.title}", body, admin=admin, flash=flash, error=error, status=status)


def _agent_info(agent: str, base: TeamSpec) -> dict[str, Any]:
    """``agent`` as the team file has it (an agent it declares alone, too), else as its plugin does."""
    chorus = current().chorus
    in_file = {m["name"]: m for m in effective(base, chorus.registry, chorus.settings.model)["members"]}
    if agent in in_file:
        return dict(in_file[agent])
    found = chorus.registry.agents.get(agent)
    if found is None:
        return {"tools": [], "system_message": "", "model": "", "plugin": ""}
    return {"tools": list(found.tools), "system_message": found.system_message,
            "model": found.model or base.model or chorus.settings.model, "temperature": found.temperature,
            "plugin": found.plugin}


def _rollback_button(team: str, number: int, token: str, current_version: int) -> str:
    target = "the team file" if number == 0 else f"version {number}"
    return (f'<form method="post" action="{PREFIX}/teams/{quote(team)}/rollback" class="inline">{_csrf(token)}'
            f'<input type="hidden" name="to" value="{number}">'
            f'<input type="hidden" name="version" value="{current_version}">'
            f'<button type="submit" class="secondary">Roll back to {target}</button></form>')


def _version_item(v: team_versions.TeamVersion, team: str, token: str, *, current_version: int) -> str:
    when = v.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    action = (" <em>in use</em>" if v.version == current_version
              else _rollback_button(team, v.version, token, current_version))
    note = f" — {escape(v.note)}" if v.note else ""
    return (f'<li id="version-{v.version}"><strong>Version {v.version}</strong> by {escape(v.author)}, {when}{note}'
            f'{action}<details><summary>What changed</summary><pre class="diff">{escape(v.diff or "(nothing)")}'
            "</pre></details></li>")


def _patch_from_form(base: TeamSpec, form: Mapping[str, Any], getlist: Any) -> TeamPatch:
    """The admin's whole version of the team, from the form: what differs from the team file."""
    chorus = current().chorus
    file_view = effective(base, chorus.registry, chorus.settings.model)
    file_members = {m["name"]: m for m in file_view["members"]}
    checked = [str(m) for m in getlist("member")]

    def position(item: tuple[int, str]) -> tuple[float, int]:
        index, agent = item
        try:
            return float(str(form.get(f"order:{agent}", "")).strip()), index
        except ValueError:
            return float(index + 1), index

    members = [agent for _, agent in sorted(enumerate(checked), key=position)]
    agents: dict[str, dict[str, Any]] = {}
    for agent in members:
        was = _agent_info(agent, base)
        changes: dict[str, Any] = {}
        prompt = str(form.get(f"prompt:{agent}", "")).replace("\r\n", "\n").strip()
        if prompt and prompt != (was.get("system_message") or "").strip():
            changes["system_message"] = prompt
        model = str(form.get(f"model:{agent}", "")).strip()
        if model and model != (was.get("model") or ""):
            changes["model"] = model
        temperature = str(form.get(f"temperature:{agent}", "")).strip()
        if temperature:
            try:
                value = float(temperature)
            except ValueError:
                raise PatchError(f"agent {agent!r}: the temperature must be a number from 0 to 2") from None
            if value != was.get("temperature"):
                changes["temperature"] = value
        tools = [str(t) for t in getlist(f"tool:{agent}")]
        if sorted(tools) != sorted(was.get("tools") or []):
            changes["tools"] = tools
        if changes:
            agents[agent] = changes
    team_tools = {str(t) for t in getlist("tool_on")}
    plugins_on = {str(p) for p in getlist("plugin_on")}
    termination: dict[str, Any] | None = None
    raw_max = str(form.get("max_messages", "")).strip()
    mention = str(form.get("text_mention", "")).strip() or None
    try:
        max_messages = int(raw_max) if raw_max else None
    except ValueError:
        raise PatchError("the most messages per turn must be a whole number") from None
    if max_messages != base.termination.max_messages or mention != base.termination.text_mention:
        termination = {"max_messages": max_messages, "text_mention": mention}
    return parse_patch({
        "members": members if members != list(file_members) else None,
        "disabled_tools": sorted(t for t in chorus.registry.tools if t not in team_tools),
        "disabled_plugins": sorted(r.name for r in chorus.registry.reports if r.status == "ok"
                                   and r.name not in plugins_on),
        "termination": termination,
        "agents": agents,
    })


async def _new_version(base: TeamSpec, patch: TeamPatch, admin: str, note: str, expected: int | None
                       ) -> team_versions.TeamVersion | None:
    """Store ``patch`` as the team's next version (None when it changes nothing); PatchError if it
    cannot apply."""
    web = current()
    chorus = web.chorus
    await chorus.overlays.refresh(web.engine())  # another worker may have saved a version since
    if expected is not None and expected != chorus.overlays.version(base.name):
        raise team_versions.VersionConflict(f"team {base.name!r} is at version {chorus.overlays.version(base.name)} "
                                            f"now, not {expected}: reload and edit again")
    before_spec = chorus.team(base.name)
    after_spec = apply_patch(base, patch, chorus.registry)
    before = describe(before_spec, chorus.registry, chorus.settings.model)
    after = describe(after_spec, chorus.registry, chorus.settings.model)
    if before == after:
        return None
    version = chorus.overlays.version(base.name)
    change = diff(before, after, old=f"{base.name} v{version}", new=f"{base.name} v{version + 1}")
    saved = await team_versions.add_version(web.engine(), base.name, patch.model_dump(mode="json"), author=admin,
                                            note=note, diff=change, expected=expected)
    await chorus.overlays.refresh(web.engine())
    log.info("admin %s saved version %d of team %s", admin, saved.version, base.name)
    return saved


@admin_only
async def save_team(request: Request) -> Response:
    name, form = await _admin_post(request)
    token = _form_token(request_token(request.scope) or "")
    base = _team(request.path_params["team"])
    getlist = form.getlist  # type: ignore[attr-defined]
    note = str(form.get("note", "")).strip()[:300]
    try:
        expected = int(str(form.get("version", "")))
    except ValueError:
        expected = None
    try:
        patch = _patch_from_form(base, form, getlist)
        saved = await _new_version(base, patch, name, note, expected)
    except (PatchError, team_versions.VersionConflict) as exc:
        return await _render_team(base, name, token, error=f"Not saved: {exc}", status=400)
    query = {"done": "saved", "v": saved.version} if saved else {"done": "same"}
    return RedirectResponse(f"{PREFIX}/teams/{quote(base.name)}?{urlencode(query)}", status_code=303)


@admin_only
async def rollback_team(request: Request) -> Response:
    name, form = await _admin_post(request)
    token = _form_token(request_token(request.scope) or "")
    base = _team(request.path_params["team"])
    number = _number(str(form.get("to", "")))
    expected = _number(str(form.get("version", "")))
    if number is None or number > MAX_VERSION:
        return await _render_team(base, name, token, error="Choose a version to roll back to.", status=400)
    if number == 0:
        patch = TeamPatch()
    else:
        found = await team_versions.version(current().engine(), base.name, number)
        if found is None:
            return await _render_team(base, name, token, error=f"There is no version {number}.", status=404)
        patch = parse_patch(found.patch)
    target = "the team file" if number == 0 else f"version {number}"
    try:
        saved = await _new_version(base, patch, name, f"rolled back to {target}", expected)
    except PatchError as exc:
        return await _render_team(base, name, token, error=f"{target} no longer applies: {exc}", status=400)
    except team_versions.VersionConflict as exc:
        return await _render_team(base, name, token, error=f"Not rolled back: {exc}", status=400)
    query = {"done": "rolled", "v": saved.version if saved else 0, "to": number}
    return RedirectResponse(f"{PREFIX}/teams/{quote(base.name)}?{urlencode(query)}", status_code=303)


# --- users and budgets ----------------------------------------------------------------------------

@admin_only
async def users_page(request: Request) -> Response:
    name, token = await _admin(request)
    web = current()
    accounts = await list_accounts(web.engine())
    spent = await spent_today(web.engine())
    report = await usage_report(web.engine(), days=30)
    budget = web.chorus.settings.user_daily_cost_budget
    rows = []
    for account in accounts:
        used = spent.get(account.identifier, 0.0)
        month = report.per_user.get(account.identifier)
        left = "no budget" if budget is None else f"${max(0.0, budget - used):,.4f} of ${budget:,.2f} left"
        rows.append(
            f'<tr id="user-{escape(account.identifier)}"><td>{escape(account.identifier)}</td>'
            f"<td>{'admin' if account.admin else 'user'}</td>"
            f"<td>${used:,.4f}</td><td>{escape(left)}</td>"
            f"<td>{month.tokens if month else 0:,} tokens · ${month.cost if month else 0.0:,.4f}</td>"
            f'<td><form method="post" action="{PREFIX}/users/{quote(account.identifier)}/budget" class="inline">'
            f'{_csrf(token)}<button type="submit" class="secondary">Reset today\'s budget</button></form></td></tr>')
    body = ("<p>Daily budget per user: "
            + ("none (set <code>CHORUS_USER_DAILY_COST_BUDGET</code>)" if budget is None else f"${budget:,.2f}")
            + ". A reset lets the user spend the whole budget again today; the ledger keeps every call. "
              "Make or remove admins with <code>chorus users promote|demote NAME</code>.</p>"
              "<table><thead><tr><th>User</th><th>Role</th><th>Spent today</th><th>Budget</th>"
              f"<th>Last 30 days</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    reset = request.query_params.get("reset", "")
    flash = f"Reset today's budget of {reset}." if reset in {a.identifier for a in accounts} else ""
    return _page("Users", body, admin=name, flash=flash)


@admin_only
async def reset_budget(request: Request) -> Response:
    name, _ = await _admin_post(request)
    user = request.path_params["name"]
    known = {a.identifier for a in await list_accounts(current().engine())}
    if user not in known:
        return _page("No such user", f"<p>There is no user {escape(user)}.</p>", status=404, admin=name)
    await UsageLedger(current().engine()).reset_budget(user, by=name)
    return RedirectResponse(f"{PREFIX}/users?{urlencode({'reset': user})}", status_code=303)


# --- usage ----------------------------------------------------------------------------------------

def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:,.0f} ms"


@admin_only
async def usage_page(request: Request) -> Response:
    name, _ = await _admin(request)
    try:
        days = max(1, min(90, int(request.query_params.get("days", "14"))))
    except ValueError:
        days = 14
    report = await usage_report(current().engine(), days=days)
    day_cost = [report.per_day[d].cost for d in report.days]
    day_tokens = [float(report.per_day[d].tokens) for d in report.days]
    pictures = [
        charts.columns(f"Cost per day (last {days} days)", report.days, [("cost", day_cost)], _money),
        charts.columns("Tokens per day", report.days, [("tokens", day_tokens)], _count),
        charts.columns("Turns per day", report.days, [("turns", [float(report.turns_per_day[d]) for d in report.days])],
                       _count),
        charts.columns("Model call latency per day", report.days,
                       [("p50", [report.latency_p50[d] for d in report.days]),
                        ("p95", [report.latency_p95[d] for d in report.days])], _ms),
    ]
    for label, group in (("team", report.per_team), ("agent", report.per_agent), ("user", report.per_user)):
        pictures.append(charts.bars(f"Cost per {label}", [(k, t.cost) for k, t in group.items()], _money))
        pictures.append(charts.bars(f"Tokens per {label}", [(k, float(t.tokens)) for k, t in group.items()], _count))
    for label, thumbs in (("team", report.thumbs_team), ("agent", report.thumbs_agent)):
        pictures.append(charts.ratios(f"Thumbs up per {label}",
                                      sorted(((k, t.up, t.down) for k, t in thumbs.items()), key=lambda x: x[0])))
    links = " · ".join(f'<a href="{PREFIX}/usage?days={d}">{d} days</a>' for d in (7, 14, 30, 90))
    body = f'<p>{links}. Days are UTC.</p><div class="charts">{"".join(pictures)}</div>'
    return _page("Usage", body, admin=name)


# --- the audit log --------------------------------------------------------------------------------

@admin_only
async def audit_page(request: Request) -> Response:
    name, _ = await _admin(request)
    query = request.query_params
    user = query.get("user", "").replace("\x00", "").strip() or None
    action = query.get("action", "").strip() or None
    since: datetime | None = None
    errors = []
    if query.get("since"):
        try:
            since = datetime.fromisoformat(query["since"]).replace(tzinfo=UTC)
        except ValueError:
            errors.append("“Since” must be a date such as 2026-12-01.")
    if action is not None and action not in audit.ACTIONS:
        errors.append(f"No action called {action!r}.")
        action = None
    error = " ".join(errors)
    entries = await audit.read(current().engine(), since=since, user=user, action=action, limit=300)
    options = "".join(f'<option value="{a}"{" selected" if a == action else ""}>{a}</option>' for a in audit.ACTIONS)
    rows = "".join(
        f"<tr><td>{e.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}</td><td>{escape(e.actor)}</td><td>{escape(e.action)}</td>"
        f"<td>{escape(e.target)}</td><td>{escape(e.address or '')}</td>"
        f"<td><code>{escape(_detail(e.detail))}</code></td></tr>" for e in entries)
    form = ('<form method="get" class="filters">'
            f'<label>User<input name="user" value="{escape(user or "", quote=True)}"></label>'
            f'<label>Action<select name="action"><option value="">any</option>{options}</select></label>'
            f'<label>Since<input name="since" type="date" value="{escape(query.get("since", ""), quote=True)}"></label>'
            '<button type="submit">Show</button></form>')
    body = (f"{form}<p>Newest first; nobody can change or delete an entry. "
            "In the terminal: <code>chorus audit [--since] [--user] [--json]</code>.</p>"
            "<table><thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>About</th><th>From</th>"
            f"<th>Detail</th></tr></thead><tbody>{rows}</tbody></table>")
    return _page("Audit log", body, admin=name, error=error)


def _detail(detail: dict[str, Any]) -> str:
    shown = {k: v for k, v in detail.items() if k != "diff"}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    return text if len(text) < 300 else text[:297] + "..."
