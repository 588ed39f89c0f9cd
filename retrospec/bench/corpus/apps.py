"""Every app of the corpus."""

from __future__ import annotations

from retrospec.bench.corpus.apps_frameworks import BOARD, NOTES
from retrospec.bench.corpus.apps_shop import SHOP
from retrospec.bench.corpus.apps_todomvc import APPS as TODOMVC_APPS
from retrospec.bench.corpus.model import App

APPS: tuple[App, ...] = (*TODOMVC_APPS, SHOP, BOARD, NOTES)


def by_name(name: str) -> App:
    for app in APPS:
        if app.name == name:
            return app
    raise KeyError(name)
