"""The admin API: off without VG_ADMIN_API_KEY, 401 for any other key; callers, keys and limits."""

from __future__ import annotations

from app.auth import keys
from app.core.db import Database
from tests.support.factories import make_caller
from tests.support.limits import ADMIN_KEY, GatewayFactory, assert_error, create_video


class TestAdminAuthentication:
    async def test_without_a_configured_admin_key_the_api_does_not_exist(self, limited_gateway: GatewayFactory) -> None:
        async with limited_gateway(admin=False) as gateway, gateway.client(ADMIN_KEY) as client:
            assert_error(await client.get("/v1/admin/callers"), 404, "not_found")
            assert_error(await client.post("/v1/admin/callers", json={"name": "x"}), 404, "not_found")

    async def test_anything_but_the_admin_key_is_401(self, limited_gateway: GatewayFactory, database: Database) -> None:
        caller = await make_caller(database)
        async with limited_gateway() as gateway:
            for presented in (None, caller.key, ADMIN_KEY + "x", ADMIN_KEY[:-1], ADMIN_KEY.upper()):
                async with gateway.client(presented) as client:
                    assert_error(await client.get("/v1/admin/callers"), 401, "invalid_admin_key")
                    assert_error(await client.delete(f"/v1/admin/keys/{caller.key_id}"), 401, "invalid_admin_key")
            async with gateway.client(caller.key) as client:
                assert (await client.get("/v1/videos")).status_code == 200  # nothing was revoked

    async def test_the_admin_key_in_the_query_string_is_400(self, limited_gateway: GatewayFactory) -> None:
        async with limited_gateway() as gateway, gateway.client(None) as client:
            response = await client.get("/v1/admin/callers", params={"api_key": ADMIN_KEY})
            assert_error(response, 400, "api_key_in_query")


class TestCallersAndKeys:
    async def test_create_list_revoke(self, limited_gateway: GatewayFactory) -> None:
        async with limited_gateway() as gateway, gateway.client(ADMIN_KEY) as admin:
            response = await admin.post("/v1/admin/callers", json={"name": "render-farm-a1", "label": "prod"})
            assert response.status_code == 201, response.text
            created = response.json()
            caller_id, first = created["caller"]["id"], created["key"]
            assert first["key"].startswith("vg_") and first["prefix"] == first["key"][:7]
            assert_error(await admin.post("/v1/admin/callers", json={"name": "render-farm-a1"}), 409, "conflict")

            response = await admin.post(f"/v1/admin/callers/{caller_id}/keys", json={"label": "rotation"})
            assert response.status_code == 201
            second = response.json()

            async with gateway.client(first["key"]) as one, gateway.client(second["key"]) as two:
                assert (await one.get("/v1/videos")).status_code == 200

                listed = await admin.get(f"/v1/admin/callers/{caller_id}/keys")
                assert [k["id"] for k in listed.json()["data"]] == [first["id"], second["id"]]
                assert listed.json()["data"][0]["last_used_at"] is not None
                # Prefixes only: never a key, its digest or its lookup.
                for plain in (first["key"], second["key"]):
                    assert plain not in listed.text
                    assert keys.digest(plain).hex()[:16] not in listed.text
                assert "key" not in listed.json()["data"][0]

                callers = (await admin.get("/v1/admin/callers")).json()["data"]
                assert "render-farm-a1" in {c["name"] for c in callers}

                revoked = await admin.delete(f"/v1/admin/keys/{first['id']}")
                assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
                assert_error(await one.get("/v1/videos"), 401, "invalid_api_key")
                assert (await two.get("/v1/videos")).status_code == 200
                # Revoking again keeps the first revocation time.
                assert (await admin.delete(f"/v1/admin/keys/{first['id']}")).json() == revoked.json()

    async def test_unknown_ids_and_bad_bodies(self, limited_gateway: GatewayFactory) -> None:
        unknown = "00000000-0000-4000-8000-000000000000"
        async with limited_gateway() as gateway, gateway.client(ADMIN_KEY) as admin:
            assert_error(await admin.delete(f"/v1/admin/keys/{unknown}"), 404, "not_found")
            assert_error(await admin.get(f"/v1/admin/callers/{unknown}/limits"), 404, "not_found")
            assert_error(await admin.post("/v1/admin/callers", json={"name": "x", "owner": "y"}), 400, "invalid_value")
            past = {"expires_at": "2020-01-01T00:00:00Z"}
            response = await admin.post("/v1/admin/callers", json={"name": "expired-at-birth", **past})
            assert_error(response, 400, "invalid_value")


class TestLimits:
    async def test_a_budget_override_applies_at_once_and_clears(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with (
            limited_gateway() as gateway,
            gateway.client(ADMIN_KEY) as admin,
            gateway.client(caller.key) as client,
        ):
            url = f"/v1/admin/callers/{caller.id}/limits"
            response = await admin.patch(url, json={"budget_usd_per_period": 0, "budget_period": "month"})
            assert response.json()["overrides"] == {
                "requests_per_minute": None,
                "max_concurrent_renders": None,
                "budget_usd_per_period": 0.0,
                "budget_period": "month",
            }
            assert_error(await create_video(client), 429, "insufficient_quota")
            assert gateway.creates == 0

            response = await admin.patch(url, json={"budget_usd_per_period": None})
            assert response.json()["effective"]["budget_usd_per_period"] == 100.0
            assert response.json()["effective"]["budget_period"] == "month"
            assert (await create_video(client)).status_code == 200
            assert gateway.creates == 1


class TestCallbackSecretsByTheOperator:
    async def test_the_operator_reads_and_rotates_a_callers_callback_secret_without_a_restart(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway() as gateway, gateway.client(ADMIN_KEY) as admin, gateway.client(caller.key) as own:
            path = f"/v1/admin/callers/{caller.id}/callback-secret"
            first = (await admin.get(path)).json()
            assert first["secret"].startswith("whsec_")
            assert (await own.get("/v1/callbacks/secret")).json()["secret"] == first["secret"]
            rotated = (await admin.post(f"{path}/rotate")).json()
            assert rotated["secret"].startswith("whsec_") and rotated["secret"] != first["secret"]
            # The caller sees the new secret at once: the same process, no restart.
            assert (await own.get("/v1/callbacks/secret")).json()["secret"] == rotated["secret"]
            async with gateway.client(caller.key) as not_admin:
                assert_error(await not_admin.get(path), 401, "invalid_admin_key")
