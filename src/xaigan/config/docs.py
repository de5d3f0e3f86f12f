"""``docs/config.md``, generated from the schema (``python -m xaigan.config > docs/config.md``)."""

from __future__ import annotations

from xaigan.config.schema import schema


def markdown() -> str:
    """``docs/config.md``: every key, grouped, with type, default, allowed values and help."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from `xaigan.config.Config` (`python -m xaigan.config > docs/config.md`). Every key can be set in a",
        "YAML file (`--config`), with its own flag (`--lr-d 1e-4`) or with `--set key=value`; later layers win.",
        "",
    ]
    group = None
    for o in schema():
        if o.group != group:
            group = o.group
            lines += ["", f"## {group}", "", "| key | type | default | allowed | help |", "|---|---|---|---|---|"]
        allowed = o.allowed()
        shown = ", ".join(allowed) if allowed else (o.range or "")
        kind = o.type.__name__ + (" or null" if o.optional else "")
        lines.append(f"| `{o.name}` | {kind} | `{o.default!r}` | {shown} | {o.help} |")
    return "\n".join(lines) + "\n"
