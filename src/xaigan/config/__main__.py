"""``python -m xaigan.config > docs/config.md``: the configuration keys as Markdown."""

from xaigan.config import markdown

print(markdown(), end="")
