"""Reading config.yaml as YAML nodes: values converted and checked with the
file, line and dotted key of every problem.

``ConfigReader`` is shared by svqtui.config (the core settings) and by each
source plug-in's settings module (its own section), so every config error in
any section reads the same: ``file:line: dotted.key: reason``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from svqtui.errors import ConfigError

T = TypeVar("T")
MAX_SCALAR_CHARS = 4096  # PATH_MAX; no setting needs a longer value
Found = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node)


class ConfigReader:
    """Walks YAML nodes, converting values and remembering where they were."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, key: str | None, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(self.path, line, key, message)

    def mapping(self, node: yaml.Node, key: str, known: tuple[str, ...]) -> Found:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key or None, f"expected a mapping of {', '.join(known)}")
        found: Found = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, key or None, "a key must be a plain name")
            name = str(key_node.value)
            dotted = f"{key}.{name}" if key else name
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                suggestion = f"did you mean '{hint[0]}'?" if hint else f"known: {', '.join(known)}"
                raise self.fail(key_node, dotted, f"unknown key ({suggestion})")
            if name in found:
                raise self.fail(key_node, dotted, "duplicate key")
            found[name] = (key_node, value_node)
        return found

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value, not a list or mapping")
        if len(node.value) > MAX_SCALAR_CHARS:
            raise self.fail(node, key, f"value longer than {MAX_SCALAR_CHARS} characters")
        try:
            return yaml.safe_load(yaml.serialize(node))
        except yaml.YAMLError as err:  # e.g. an unknown !!tag
            problem = getattr(err, "problem", None) or str(err)
            raise self.fail(node, key, f"cannot read this value: {problem}") from None
        except ValueError as err:  # e.g. an integer past Python's digit limit
            raise self.fail(node, key, f"cannot read this value: {err}") from None

    def number(self, node: yaml.Node, key: str, minimum: float, maximum: float) -> float:
        value = self.scalar(node, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, key, f"expected a number, got {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(node, key, f"must be between {minimum:g} and {maximum:g}, got {value}")
        return float(value)

    def integer(self, node: yaml.Node, key: str, minimum: int, maximum: int) -> int:
        value = self.scalar(node, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, key, f"expected a whole number, got {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(node, key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.scalar(node, key)
        if isinstance(value, str) and value.lower() in ("on", "off"):
            return value.lower() == "on"
        if not isinstance(value, bool):
            raise self.fail(node, key, f"expected true/false (or on/off), got {value!r}")
        return value

    def text(self, node: yaml.Node, key: str) -> str:
        value = self.scalar(node, key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, key, f"expected a non-empty string, got {value!r}")
        return value

    def path_text(self, node: yaml.Node, key: str) -> str:
        """A path, ``~`` expanded, relative ones taken from the config file's
        directory, normalised (``./``, ``..``, ``//``) so equal paths compare equal."""
        value = self.text(node, key)
        if "\0" in value:
            raise self.fail(node, key, "a path cannot contain NUL")
        value = os.path.expanduser(value)
        if not os.path.isabs(value):
            value = os.path.join(os.path.dirname(os.path.abspath(self.path)), value)
        return os.path.normpath(value)

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list")
        return list(node.value)

    def optional(
        self,
        found: Found,
        name: str,
        key: str,
        convert: Callable[[yaml.Node, str], T],
        default: T,
    ) -> T:
        if name not in found:
            return default
        node = found[name][1]
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return default
        return convert(node, f"{key}.{name}" if key else name)
