"""Groups the driver chooses (docs/protocol.md §5, protocol 2).

A group is ``invite`` (the default: joining needs an invitation or the owner's approval) or
``open`` (a circle any car of its model and region may join), by the group's own choice. A car
learns only of the groups it is in, may join, was invited to or asked to join.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from carlink_protocol import wire as p

from .context import Ctx, Outcome, text
from .store import Device

NAME_MAX = 64
NOTICE_EVERY_S = 3600.0  # an owner hears of one car's join request at most this often


def groups_item(c: sqlite3.Connection, device: Device) -> dict[str, Any]:
    """The downstream ``groups`` body for a car: joined, available, invited, pending."""
    def names(sql: str, *args: object) -> list[str]:
        return [r[0] for r in c.execute(sql, args)]
    joined = names("SELECT g.name FROM groups g JOIN members m ON m.group_id = g.id "
                   "WHERE m.device_id = ? ORDER BY g.name", device.id)
    available = names("SELECT name FROM groups g WHERE policy = 'open' AND model IN ('', ?) "
                      "AND region IN ('', ?) AND NOT EXISTS (SELECT 1 FROM members m WHERE "
                      "m.group_id = g.id AND m.device_id = ?) ORDER BY name",
                      device.model, device.region, device.id)
    invited = names("SELECT g.name FROM groups g JOIN invitations i ON i.group_id = g.id "
                    "WHERE i.device_id = ? ORDER BY g.name", device.id)
    pending = names("SELECT g.name FROM groups g JOIN pending w ON w.group_id = g.id "
                    "WHERE w.device_id = ? ORDER BY g.name", device.id)
    return {"joined": joined, "available": available, "invited": invited, "pending": pending}


def _group(ctx: Ctx, name: str) -> tuple[int, str, str, str, int | None]:
    row = ctx.c.execute("SELECT id, model, region, policy, owner_id FROM groups WHERE name = ?",
                        (name,)).fetchone()
    if row is None:
        raise ValueError(f"no group {name!r}")
    return row[0], row[1], row[2], row[3], row[4]


def _member(ctx: Ctx, gid: int, device_id: int) -> bool:
    return ctx.c.execute("SELECT 1 FROM members WHERE group_id = ? AND device_id = ?",
                         (gid, device_id)).fetchone() is not None


def _first_ask(ctx: Ctx, gid: int) -> bool:
    """Whether the owner should hear of this car's join request: once per hour at most, however
    often it leaves and asks again."""
    row = ctx.c.execute("SELECT at FROM join_notices WHERE group_id = ? AND device_id = ?",
                        (gid, ctx.device.id)).fetchone()
    if row is not None and row[0] > ctx.now - NOTICE_EVERY_S:
        return False
    ctx.c.execute("INSERT OR REPLACE INTO join_notices VALUES (?,?,?)",
                  (gid, ctx.device.id, ctx.now))
    return True


def group_join(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Join an open circle of this car's model and region, or an invite-only group with an
    invitation; otherwise ask its owner (``pending``)."""
    name = text(item.body, "group", max_len=NAME_MAX)
    gid, model, region, policy, owner = _group(ctx, name)
    dev = ctx.device
    if model not in ("", dev.model) or region not in ("", dev.region):
        return "rejected", f"group {name!r} is for {model or 'any model'} in " \
                           f"{region or 'any region'}", {}
    invited = ctx.c.execute("DELETE FROM invitations WHERE group_id = ? AND device_id = ?",
                            (gid, dev.id)).rowcount > 0
    if _member(ctx, gid, dev.id) or policy == "open" or invited:
        ctx.c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (gid, dev.id))
        ctx.c.execute("DELETE FROM pending WHERE group_id = ? AND device_id = ?", (gid, dev.id))
        state = "joined"
    else:
        ctx.c.execute("INSERT OR IGNORE INTO pending VALUES (?,?,?)", (gid, dev.id, ctx.now))
        if owner is not None and owner != dev.id and _first_ask(ctx, gid):
            ctx.down(owner, "group_join_request", {"group": name, "from": dev.name})
        state = "pending"
    ctx.down(dev.id, "groups", groups_item(ctx.c, dev))
    return "stored", "", {"group": name, "state": state}


def group_approve(ctx: Ctx, item: p.UpItem) -> Outcome:
    """The group's owner lets a car that asked to join in."""
    name = text(item.body, "group", max_len=NAME_MAX)
    who = text(item.body, "device", max_len=128)
    gid, _, _, _, owner = _group(ctx, name)
    if owner != ctx.device.id:
        return "rejected", f"only the owner of group {name!r} approves joins", {}
    row = ctx.c.execute("SELECT d.id, d.name, d.model, d.region FROM pending w JOIN devices d "
                        "ON d.id = w.device_id WHERE w.group_id = ? AND d.name = ?",
                        (gid, who)).fetchone()
    if row is None:
        return "rejected", f"{who!r} has not asked to join {name!r}", {}
    device = Device(*row)
    ctx.c.execute("DELETE FROM pending WHERE group_id = ? AND device_id = ?", (gid, device.id))
    ctx.c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (gid, device.id))
    ctx.down(device.id, "groups", groups_item(ctx.c, device))
    return "stored", "", {"group": name, "device": device.name, "state": "joined"}


def group_leave(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Leave a group, or withdraw a join request (neither being in it is not an error)."""
    name = text(item.body, "group", max_len=NAME_MAX)
    gid = _group(ctx, name)[0]
    for table in ("members", "pending"):
        ctx.c.execute(f"DELETE FROM {table} WHERE group_id = ? AND device_id = ?",
                      (gid, ctx.device.id))
    ctx.down(ctx.device.id, "groups", groups_item(ctx.c, ctx.device))
    return "stored", "", {"group": name}


def group_list(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Send the car's groups downstream: only what it is in or may join."""
    ctx.down(ctx.device.id, "groups", groups_item(ctx.c, ctx.device))
    return "stored", "", {}
