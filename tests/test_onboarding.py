"""Onboarding several EHRs: an issuer's served list of allowed `jku` URLs, and per-site options (card types,
indicator floor, link allowlist) per issuer and tenant, with red flags never turned off. Through HTTP in the
production profile, with `responses` as the issuer's servers."""

from __future__ import annotations

import orjson
import pytest
import responses

from cds_service.config import ConfigError
from cds_service.fixtures import load_fixtures
from cds_service.security import keys as key_module
from cds_service.security.issuers import load_trusted_issuers
from cds_service.security.site_options import SiteOptions
from cds_service.services import patient_view
from cds_service.state import state
from tests.issuer import LOCAL_ROOT, Issuer, bearer, trusted_issuers_file
from tests.support import assert_operation_outcome

PV = "/cds-services/fbss-miss-advisor"
VENDOR = Issuer("https://vendor-ehr.example.org", "ES384")
LIST_URL = "https://vendor-ehr.example.org/cds/allowed-jku.json"
TENANT_JWKS = "https://tenant-a.vendor-ehr.example.org/jwks.json"
SITE = Issuer("https://site-ehr.example.org", "ES384")
FIXTURES = load_fixtures()


def _fixture(suffix: str):
    return next(f for f in FIXTURES if f.name.endswith(suffix))


def pv_body(fixture) -> dict:
    return fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)


@pytest.fixture
def vendor(make_app, tmp_path):
    path = trusted_issuers_file(tmp_path / "issuers.json",
                                {"iss": VENDOR.iss, "jwks_uri": TENANT_JWKS, "jku_list_uri": LIST_URL})
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=path, JWKS_MIN_REFRESH_SECONDS=300,
                   DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    clock = [1000.0]
    state(app).verifier.keys.clock = lambda: clock[0]
    app.clock_seconds = clock
    return app


def call(app, token, body=None):
    fixture = _fixture("fbss-lumbar-classic")
    state(app).clock = lambda: fixture.anchor
    return app.test_client().post(PV, json=body or pv_body(fixture), headers=bearer(token))


def test_a_jku_on_the_issuers_served_list_is_honoured(vendor):
    with responses.RequestsMock() as mock:
        listed = mock.add(responses.GET, LIST_URL, json={"jku": [TENANT_JWKS, "http://plain.example/jwks.json"]})
        keys = mock.add(responses.GET, TENANT_JWKS, json=VENDOR.jwks)
        assert call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})).status_code == 200
        assert call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})).status_code == 200
        assert listed.call_count == 1 and keys.call_count == 1  # both cached


def test_a_jku_not_on_the_list_is_refused_never_fetched_and_the_list_refetched_at_most_once_per_interval(vendor):
    evil = "https://attacker.example/jwks.json"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        listed = mock.add(responses.GET, LIST_URL, json=[TENANT_JWKS])
        fetched_evil = mock.add(responses.GET, evil, json=VENDOR.jwks)
        for _ in range(3):
            response = call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": evil}))
            assert_operation_outcome(response, 401)
        assert fetched_evil.call_count == 0
        assert listed.call_count == 1  # an unknown jku refetches the list once per refresh interval, not per token
        vendor.clock_seconds[0] += 301
        assert_operation_outcome(call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": evil})), 401)
        assert listed.call_count == 2


def test_a_url_added_to_the_list_is_honoured_after_the_refresh_interval_and_one_removed_within_an_hour(vendor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=[])
        mock.add(responses.GET, TENANT_JWKS, json=VENDOR.jwks)
        assert_operation_outcome(call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})), 401)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=[TENANT_JWKS])
        mock.add(responses.GET, TENANT_JWKS, json=VENDOR.jwks)
        vendor.clock_seconds[0] += 301
        assert call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})).status_code == 200
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=[])
        vendor.clock_seconds[0] += key_module.JKU_LIST_MAX_AGE_SECONDS
        assert_operation_outcome(call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})), 401)


def test_a_failing_list_keeps_the_last_one_fetched(vendor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=[TENANT_JWKS])
        mock.add(responses.GET, TENANT_JWKS, json=VENDOR.jwks)
        assert call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})).status_code == 200
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        down = mock.add(responses.GET, LIST_URL, status=503)
        vendor.clock_seconds[0] += key_module.JKU_LIST_MAX_AGE_SECONDS
        assert call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})).status_code == 200
        assert down.call_count == 1


def test_jku_list_uri_must_be_https(tmp_path):
    path = trusted_issuers_file(tmp_path / "i.json", {"iss": VENDOR.iss, "jwks_uri": TENANT_JWKS,
                                                      "jku_list_uri": "http://vendor-ehr.example.org/list"})
    with pytest.raises(ValueError, match="jku_list_uri must be an https URL"):
        load_trusted_issuers(path, local=False)


# Per-site options ----------------------------------------------------------------------------------------------------

@pytest.fixture
def sites(make_app, tmp_path):
    entry = SITE.config(tenant=["hospital-a", "hospital-b", "hospital-c"], site_options={
        "*": {"minimum_indicator": "warning"},
        "hospital-a": {"card_types": ["red-flag", "revision-referral"]},
        "hospital-c": {"link_allowlist": ["https://acsearch.acr.org/"]},
    })
    path = trusted_issuers_file(tmp_path / "issuers.json", entry)
    return make_app(PROFILE="production", TRUSTED_ISSUERS=path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")


@pytest.fixture
def unfiltered(make_app, tmp_path):
    path = trusted_issuers_file(tmp_path / "plain.json", SITE.config())
    return make_app(PROFILE="production", TRUSTED_ISSUERS=path, DATABASE_URL=f"sqlite:///{tmp_path / 'p.sqlite3'}")


def site_cards(app, tenant, fixture) -> list[dict]:
    state(app).clock = lambda: fixture.anchor
    token = SITE.token(LOCAL_ROOT + PV, tenant=tenant)
    response = app.test_client().post(PV, json=pv_body(fixture), headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return orjson.loads(response.get_data())["cards"]


def types(cards) -> list[str]:
    return [card["source"]["topic"]["code"] for card in cards]


SCS = _fixture("21-scs-candidate")  # fbss-imaging (warning), scs-consider (info); ACR, AANS and NICE links
PSEUDARTHROSIS = _fixture("08-pseudarthrosis-with-risks")  # fbss-imaging, miss-risk, revision-referral
CAUDA_EQUINA = _fixture("10-red-flag-cauda-equina")  # red-flag (critical) only


def test_the_issuers_default_options_set_an_indicator_floor(sites, unfiltered):
    assert types(site_cards(unfiltered, "x", SCS)) == ["fbss-imaging", "scs-consider"]
    assert types(site_cards(sites, "hospital-b", SCS)) == ["fbss-imaging"]


def test_a_tenants_own_options_replace_the_issuers_default(sites, unfiltered):
    assert set(types(site_cards(unfiltered, "x", PSEUDARTHROSIS))) == {"fbss-imaging", "miss-risk",
                                                                       "revision-referral"}
    assert types(site_cards(sites, "hospital-a", PSEUDARTHROSIS)) == ["revision-referral"]
    assert types(site_cards(sites, "hospital-c", SCS)) == ["fbss-imaging", "scs-consider"]  # no floor for it


def test_red_flags_pass_every_filter(sites):
    for tenant in ("hospital-a", "hospital-b", "hospital-c"):
        assert types(site_cards(sites, tenant, CAUDA_EQUINA)) == ["red-flag"], tenant


def test_links_outside_the_allowlist_are_removed_and_the_cards_kept(sites, unfiltered):
    before = site_cards(unfiltered, "x", SCS)
    after = site_cards(sites, "hospital-c", SCS)
    assert types(after) == types(before)
    links_before = [link["url"] for card in before for link in card.get("links", []) if link["type"] != "smart"]
    links_after = [link["url"] for card in after for link in card.get("links", []) if link["type"] != "smart"]
    assert any(not url.startswith("https://acsearch.acr.org/") for url in links_before)
    assert links_after and all(url.startswith("https://acsearch.acr.org/") for url in links_after)
    assert links_after == [url for url in links_before if url.startswith("https://acsearch.acr.org/")]
    state(sites).ledger.flush()
    with state(sites).database.connect() as connection:  # what was answered is what was recorded
        recorded = {uuid for (uuid,) in connection.exec_driver_sql("SELECT card_uuid FROM issued_card")}
    assert {card["uuid"] for card in after} <= recorded


def test_cards_a_site_does_not_take_are_not_recorded(sites):
    cards = site_cards(sites, "hospital-a", PSEUDARTHROSIS)
    state(sites).ledger.flush()
    with state(sites).database.connect() as connection:
        recorded = [t for (t,) in connection.exec_driver_sql("SELECT card_type FROM issued_card")]
    assert recorded == types(cards) == ["revision-referral"]


@pytest.mark.parametrize(("options", "message"), [
    ({"*": {"card_types": ["revision-referral"]}}, r"must include \['red-flag'\]"),
    ({"*": {"card_types": ["red-flag", "no-such-card"]}}, "unknown card type"),
    ({"*": {"minimum_indicator": "urgent"}}, "minimum_indicator is one of"),
    ({"*": {"link_allowlist": ["http://www.acr.org/"]}}, "https URL prefixes"),
    ({"*": {"link_allowlist": ["https://www.acr.org"]}}, "https URL prefixes"),
    ({"*": {"colour": "red"}}, "unknown option"),
    ({"hospital-z": {"minimum_indicator": "warning"}}, "not enabled"),
])
def test_bad_site_options_stop_start_up_naming_the_problem(make_app, tmp_path, options, message):
    path = trusted_issuers_file(tmp_path / "bad.json", SITE.config(tenant=["hospital-a"], site_options=options))
    with pytest.raises(ConfigError, match=message):
        make_app(PROFILE="production", TRUSTED_ISSUERS=path, DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")


def test_the_indicator_floor_never_drops_a_red_flag_card():
    card = {"source": {"topic": {"code": "red-flag"}}, "indicator": "info"}
    assert SiteOptions(minimum_indicator="critical").apply([card]) == [card]


def test_a_silent_version_is_compared_under_the_sites_options(make_app, tmp_path):
    """hospital-a takes only red flags and revision referrals: the silent evaluation of its call records no other
    card either, so the comparison shows what the site would see."""
    from tests.test_silent import silent_folder  # noqa: PLC0415

    entry = SITE.config(tenant=["hospital-a"],
                        site_options={"hospital-a": {"card_types": ["red-flag", "revision-referral"]}})
    app = make_app(PROFILE="production", TRUSTED_ISSUERS=trusted_issuers_file(tmp_path / "i.json", entry),
                   DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", SILENT_KNOWLEDGE=silent_folder(tmp_path))
    state(app).clock = lambda: PSEUDARTHROSIS.anchor
    token = SITE.token(LOCAL_ROOT + PV, tenant="hospital-a")
    response = app.test_client().post(PV, json=pv_body(PSEUDARTHROSIS), headers=bearer(token))
    assert types(orjson.loads(response.get_data())["cards"]) == ["revision-referral"]
    response.close()  # as the server does once the response is sent: the silent evaluation runs
    state(app).ledger.flush()
    with state(app).database.connect() as connection:
        rows = connection.exec_driver_sql("SELECT card_type, silent FROM issued_card ORDER BY silent").fetchall()
        compared = connection.exec_driver_sql("SELECT live_card_types, silent_card_types FROM silent_call").fetchall()
    assert sorted(rows) == [("revision-referral", False), ("revision-referral", True)]
    assert compared == [("revision-referral", "revision-referral")]


def test_an_oversized_jku_list_or_key_set_is_refused_not_read_whole(vendor, caplog):
    huge = orjson.dumps({"jku": [TENANT_JWKS] + ["https://x.example/" + "a" * 100] * 12_000})
    assert len(huge) > key_module.MAX_KEY_DOCUMENT_BYTES
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, body=huge, content_type="application/json")
        mock.add(responses.GET, TENANT_JWKS, json=VENDOR.jwks)
        assert_operation_outcome(call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})), 401)
    assert any(r.getMessage() == "jku list fetch failed" and r.error_type == "ValueError" for r in caplog.records)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:  # the same for a key set
        vendor.clock_seconds[0] += key_module.JKU_LIST_MAX_AGE_SECONDS
        mock.add(responses.GET, LIST_URL, json=[TENANT_JWKS])
        padded = {"keys": VENDOR.jwks["keys"], "padding": "x" * (key_module.MAX_KEY_DOCUMENT_BYTES + 1)}
        mock.add(responses.GET, TENANT_JWKS, json=padded)
        assert_operation_outcome(call(vendor, VENDOR.token(LOCAL_ROOT + PV, header={"jku": TENANT_JWKS})), 401)


def test_the_always_answered_card_types_are_declared_data_and_checked(monkeypatch):
    from cds_service.clinical import knowledge  # noqa: PLC0415

    assert knowledge.always_answered_card_types() == {"red-flag"}
    real = knowledge._data

    def with_undeclared(name):
        data = real(name)
        if name == "card-types.json":
            data[knowledge.ALWAYS_ANSWERED] = ["red-flag", "no-such-card"]
        return data

    monkeypatch.setattr(knowledge, "_data", with_undeclared)
    knowledge.always_answered_card_types.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"undeclared card types \['no-such-card'\]"):
            knowledge.always_answered_card_types()
    finally:
        monkeypatch.undo()
        knowledge.always_answered_card_types.cache_clear()
