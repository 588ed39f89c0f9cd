"""`retrospec tokens ...`: shown once, stored as a digest, listed without the token, revoked."""

from __future__ import annotations

import json
from pathlib import Path

from retrospec import tokens
from retrospec.storage.db import connect
from tests.support.shop import Shop, invoke, make_shop


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    shop: Shop = make_shop(tmp_path / "data", n=1)
    created = invoke(shop, "tokens", "create", "deploy-bot", "--scope", "write", "--json")
    assert created.exit_code == 0, created.output
    doc = json.loads(created.stdout)
    assert doc["token"].startswith("rst_") and doc["scope"] == "write"
    assert doc["token"].startswith(doc["prefix"])
    dup = invoke(shop, "tokens", "create", "deploy-bot")
    assert dup.exit_code == 1 and "already exists" in str(dup.exception)
    bad = invoke(shop, "tokens", "create", "x", "--scope", "admin")
    assert bad.exit_code == 2
    conn = connect(shop.settings.db_path, readonly=True)
    try:
        stored = conn.execute(
            "SELECT token_hash FROM api_tokens WHERE name = 'deploy-bot'"
        ).fetchone()[0]
        assert doc["token"] not in json.dumps([tuple(r) for r in conn.execute(
            "SELECT * FROM api_tokens")])  # fmt: skip
    finally:
        conn.close()
    assert stored == tokens.token_digest(doc["token"])
    table = invoke(shop, "tokens", "list").stdout
    assert "deploy-bot" in table and doc["token"] not in table
    assert invoke(shop, "tokens", "revoke", str(doc["id"])).exit_code == 0
    assert invoke(shop, "tokens", "revoke", str(doc["id"])).exit_code == 1
    assert invoke(shop, "tokens", "create", "deploy-bot").exit_code == 0  # the name is free again
