"""The console's themes, registered here and nowhere else.

Each theme is a stylesheet `themes/<name>.tcss` beside this module (package data, so a wheel install
has them too) whose rules are scoped to the app class
`-vectra-<name>`. All of them are loaded at start, so switching theme is a class change, not a reload.
Each also names the built-in Textual theme that colours the stock widgets (footer, input) to match.
"""

from __future__ import annotations

from pathlib import Path

THEMES_DIR = Path(__file__).resolve().parent

THEMES: dict[str, str] = {
    "dark": "textual-dark",
    "light": "textual-light",
}


class UnknownTheme(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown theme {name!r}; available: {', '.join(THEMES)}")


def stylesheets() -> list[Path]:
    """Every theme's stylesheet (each scoped to its own class, so they never clash)."""
    missing = [name for name in THEMES if not (THEMES_DIR / f"{name}.tcss").is_file()]
    if missing:
        raise FileNotFoundError(f"theme files missing in {THEMES_DIR}: {', '.join(missing)}")
    return [THEMES_DIR / f"{name}.tcss" for name in THEMES]


def checked(name: str) -> str:
    if name not in THEMES:
        raise UnknownTheme(name)
    return name


def css_class(name: str) -> str:
    return f"-vectra-{name}"  # not `-theme-`: Textual clears those on a theme change


def following(name: str) -> str:
    names = list(THEMES)
    return names[(names.index(name) + 1) % len(names)]
