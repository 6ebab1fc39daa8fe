"""`VECTRA_KEYMAP`: the console's keys remapped by binding id, as in any Textual app (`App.set_keymap`).

The setting is one line of text so that it fits an environment variable: `record=ctrl+r,quit=ctrl+q,f10`
(a key without `id=` adds one more key to the id before it, as Textual's own comma-separated keys do).
An id no binding has, or a key Textual cannot name, is refused before the screen opens: a typo must
never leave a command silently without its key.
"""

from __future__ import annotations

from typing import Iterable

from textual.binding import Binding
from textual.keys import KEY_NAME_REPLACEMENTS, Keys, key_to_character

MODIFIERS = frozenset({"ctrl", "alt", "shift", "meta", "super", "hyper"})
NAMED_KEYS = frozenset(
    {key.value for key in Keys if "+" not in key.value and not key.value.startswith("<")}
    | set(KEY_NAME_REPLACEMENTS.values())
)


class KeymapError(ValueError):
    """The keymap names a binding or a key that does not exist; the message is one line."""


def parse_keymap(text: str, bindings: Iterable[Binding]) -> dict[str, str]:
    """Textual's keymap (binding id -> comma-separated keys) from the setting's text."""
    ids = [binding.id for binding in bindings if binding.id]
    keymap: dict[str, list[str]] = {}
    binding_id = None
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        named, equals, key = item.partition("=")
        if equals:
            binding_id, key = named.strip(), key.strip()
            if binding_id not in ids:
                raise KeymapError(f"VECTRA_KEYMAP: no console binding has the id {binding_id!r}; ids: {', '.join(ids)}")
        elif binding_id is None:
            raise KeymapError(f"VECTRA_KEYMAP: {item!r} names no binding (write id=key, e.g. record=ctrl+r)")
        else:
            key = item
        if not is_key(key):
            raise KeymapError(
                f"VECTRA_KEYMAP: {key!r} (for {binding_id}) is not a key; e.g. r, ?, ctrl+r, f10, escape, space"
            )
        keymap.setdefault(binding_id, []).append(key)
    return {binding_id: ",".join(keys) for binding_id, keys in keymap.items()}


def is_key(key: str) -> bool:
    """Whether Textual can bind this key: modifiers, then a character or a key name it knows."""
    *modifiers, name = key.split("+")
    if any(modifier not in MODIFIERS for modifier in modifiers):
        return False
    return (len(name) == 1 and name.isprintable()) or name in NAMED_KEYS or key_to_character(name) is not None
