"""The typed scenario model: loading, overrides, exchanges, tiers, round trip, refusals."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from margin_sim.durations import SECONDS_PER_YEAR
from margin_sim.errors import MarginSimError, ScenarioError
from margin_sim.scenario import (
    ExchangeSpec,
    KouJumps,
    MertonJumps,
    Scenario,
    apply_overrides,
    load_exchange,
    load_scenario,
)

REPO = Path(__file__).resolve().parent.parent
SCENARIO_FILES = sorted((REPO / "params" / "scenarios").glob("*.yaml"))
EXCHANGE_FILES = sorted((REPO / "params" / "exchanges").glob("*.yaml"))


def _refused(source: Any, overrides: Any = ()) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(source, overrides)
    error = caught.value
    assert "\n" not in str(error)
    assert str(error) == f"{error.field}: {error.reason}"
    return error


def _inline_tiers(tiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule": "binance", "tiers": {"default": tiers}}


def _mm(notional: float, tier: Any) -> float:
    """Maintenance margin of a tier at a notional, quote currency (DESIGN section 4)."""
    return notional * tier.mmr - tier.cum


# ------------------------------------------------------------------ shipped files


def test_the_required_scenarios_are_shipped() -> None:
    assert {"baseline", "hedge", "degen"} <= {p.stem for p in SCENARIO_FILES}


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert isinstance(scenario, Scenario)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert scenario.name == raw.get("name", path.stem)
    assert scenario.n_steps * scenario.step == pytest.approx(scenario.horizon)
    assert scenario.asset_names == tuple(raw["market"]["assets"])
    assert path.read_text(encoding="utf-8").startswith("#"), "say what question it answers"
    for position in scenario.account.positions:
        assert position.asset in scenario.asset_names


@pytest.mark.parametrize("path", EXCHANGE_FILES, ids=[p.stem for p in EXCHANGE_FILES])
def test_every_shipped_exchange_validates(path: Path, tiny_scenario: dict[str, Any]) -> None:
    tiny_scenario["exchange"] = path.stem
    tiny_scenario["account"]["positions"][0]["leverage"] = 2.0
    scenario = load_scenario(tiny_scenario)
    assert scenario.exchange.name == path.stem
    assert scenario.exchange.as_of is not None
    assert scenario.exchange.tier_table("BTC")


def test_baseline_matches_its_description() -> None:
    scenario = load_scenario(REPO / "params" / "scenarios" / "baseline.yaml")
    (position,) = scenario.account.positions
    assert (position.asset, position.side, position.leverage) == ("BTC", "long", 10.0)
    assert (scenario.account.balance, position.margin) == (10_000.0, 1_000.0)
    assert scenario.exchange.name == "binance-usdm"


def test_binance_brackets_are_the_published_snapshot(repo_root: Path) -> None:
    source = repo_root.parent / "shared" / "data" / "exchanges" / "binance_tiers_btc_eth.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    symbols = json.loads(source.read_text(encoding="utf-8"))["symbols"]
    spec = ExchangeSpec.model_validate(load_exchange("binance-usdm"))
    for asset, symbol in (("BTC", "BTCUSDT"), ("ETH", "ETHUSDT")):
        ours, theirs = spec.tier_table(asset), symbols[symbol]
        assert len(ours) == len(theirs) == 12
        for tier, row in zip(ours, theirs, strict=True):
            assert tier.floor == row["notional_floor"]
            assert tier.cap == row["notional_cap"]
            assert tier.mmr == row["maint_margin_ratio"]
            assert tier.cum == pytest.approx(row["cum"], abs=1e-6)
            assert tier.max_leverage == row["max_leverage"]


# ------------------------------------------------------------------ units, durations


def test_durations_and_derived_units(tiny_scenario: dict[str, Any]) -> None:
    tiny_scenario.update(horizon="7d", step="15min")
    scenario = load_scenario(tiny_scenario)
    assert scenario.horizon == 7 * 86400.0
    assert scenario.step == 900.0
    assert scenario.n_steps == 7 * 24 * 4
    assert scenario.dt_years == pytest.approx(900.0 / SECONDS_PER_YEAR, rel=1e-15)
    assert scenario.horizon_years == pytest.approx(7 / 365, rel=1e-15)
    assert scenario.to_mapping()["horizon"] == "7d"
    assert scenario.to_mapping()["step"] == "15min"


def test_defaults_fill_in_optional_sections(tiny_scenario: dict[str, Any]) -> None:
    for key in ("modes", "ruin", "seed", "chunk_paths"):
        del tiny_scenario[key]
    del tiny_scenario["market"]["assets"]["BTC"]["jumps"]
    scenario = load_scenario(tiny_scenario)
    assert scenario.modes == ["isolated", "cross"]
    assert 0 < scenario.ruin.equity_fraction < 1
    assert scenario.market.assets["BTC"].jumps is None


def test_jump_models_by_name(tiny_scenario: dict[str, Any]) -> None:
    merton = load_scenario(tiny_scenario).market.assets["BTC"].jumps
    assert isinstance(merton, MertonJumps)
    tiny_scenario["market"]["assets"]["BTC"]["jumps"] = {
        "model": "kou", "per_year": 5, "p_up": 0.3, "up_mean": 0.03, "down_mean": 0.05
    }  # fmt: skip
    kou = load_scenario(tiny_scenario).market.assets["BTC"].jumps
    assert isinstance(kou, KouJumps)
    assert (kou.p_up, kou.up_mean, kou.down_mean) == (0.3, 0.03, 0.05)


def test_the_model_is_frozen(tiny_scenario: dict[str, Any]) -> None:
    scenario = load_scenario(tiny_scenario)
    with pytest.raises(ValueError, match="frozen"):
        scenario.paths = 5  # type: ignore[misc]


# ------------------------------------------------------------------ overrides


def test_override_through_a_list_index(tiny_scenario: dict[str, Any]) -> None:
    scenario = load_scenario(tiny_scenario, ["account.positions.0.leverage=20"])
    assert scenario.account.positions[0].leverage == 20.0
    assert scenario.account.positions[0].notional == 20_000.0
    same = load_scenario(tiny_scenario, {"account.positions.0.leverage": 20})
    assert same == scenario


def test_override_values_are_read_as_yaml(tiny_scenario: dict[str, Any]) -> None:
    scenario = load_scenario(
        tiny_scenario,
        ["modes=[cross]", "market.assets.BTC.vol=0.8", "name=renamed", "horizon=2d"],
    )
    assert scenario.modes == ["cross"]
    assert scenario.market.assets["BTC"].vol == 0.8
    assert scenario.name == "renamed"
    assert scenario.n_steps == 48


def test_override_creates_missing_mapping_keys(tiny_scenario: dict[str, Any]) -> None:
    del tiny_scenario["market"]["assets"]["BTC"]["wicks"]
    tiny_scenario["market"]["assets"]["ETH"] = {"price": 2500.0, "vol": 0.75}
    scenario = load_scenario(
        tiny_scenario,
        ["market.assets.BTC.wicks.per_year=3", "market.correlation.BTC-ETH=0.5"],
    )
    wicks = scenario.market.assets["BTC"].wicks
    assert wicks is not None and wicks.per_year == 3.0
    assert scenario.market.correlation_matrix()[0, 1] == 0.5


def test_a_created_key_is_validated_like_any_other(tiny_scenario: dict[str, Any]) -> None:
    error = _refused(tiny_scenario, ["market.assets.BTC.colour=red"])
    assert error.field == "market.assets.BTC.colour"
    assert error.reason == "unknown key"


def test_overrides_leave_the_input_untouched(tiny_scenario: dict[str, Any]) -> None:
    before = copy.deepcopy(tiny_scenario)
    apply_overrides(tiny_scenario, ["account.positions.0.leverage=20", "a.b.c=1"])
    assert tiny_scenario == before


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ("account.positions.1.leverage=20", "account.positions.1", "no item 1 in a list of 1"),
        ("account.positions.-1.leverage=20", "account.positions.-1", "no item -1"),
        ("account.positions.first=1", "account.positions.first", "no item first"),
        ("paths.count=5", "paths.count", "cannot set a key inside a plain value"),
        ("market..assets=1", "market..assets", "empty part"),
        ("=5", "=5", "the key is empty"),
        ("no-equals-sign", "no-equals-sign", "key.path=value"),
    ],
)
def test_bad_override_paths_are_one_line(
    tiny_scenario: dict[str, Any], override: str, field: str, reason: str
) -> None:
    error = _refused(tiny_scenario, [override])
    assert error.field == field
    assert reason in error.reason


def test_with_overrides_revalidates(tiny_scenario: dict[str, Any]) -> None:
    scenario = load_scenario(tiny_scenario)
    assert scenario.with_overrides({"paths": 50}).paths == 50
    with pytest.raises(ScenarioError, match=r"account\.positions\.0\.leverage"):
        scenario.with_overrides(["account.positions.0.leverage=1000"])


# ------------------------------------------------------------------ exchange


def test_exchange_by_name_equals_the_same_rules_inline(
    repo_root: Path, tiny_scenario: dict[str, Any]
) -> None:
    by_name = load_scenario(tiny_scenario)
    text = (repo_root / "params" / "exchanges" / "binance-usdm.yaml").read_text(encoding="utf-8")
    inline = yaml.safe_load(text)
    inline["name"] = "binance-usdm"
    tiny_scenario["exchange"] = inline
    assert load_scenario(tiny_scenario) == by_name
    assert by_name.exchange.name == "binance-usdm"
    assert by_name.exchange.rule == "binance"


def test_inline_exchange_without_a_name_is_called_inline(tiny_scenario: dict[str, Any]) -> None:
    tiny_scenario["exchange"] = _inline_tiers([{"floor": 0, "mmr": 0.01, "max_leverage": 20}])
    scenario = load_scenario(tiny_scenario)
    assert scenario.exchange.name == "inline"
    tier = scenario.exchange.tier_for("BTC", 1e12)
    assert tier.cap is None and tier.cum == 0.0


def test_exchange_file_next_to_the_scenario_wins(
    tmp_path: Path, tiny_scenario: dict[str, Any]
) -> None:
    folder = tmp_path / "exchanges"
    folder.mkdir()
    rules = _inline_tiers([{"floor": 0, "mmr": 0.02, "max_leverage": 15}])
    (folder / "my-venue.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    tiny_scenario["exchange"] = "my-venue"
    path = scenarios / "mine.yaml"
    path.write_text(yaml.safe_dump(tiny_scenario), encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.exchange.name == "my-venue"
    assert scenario.exchange.tier_for("BTC", 10_000).mmr == 0.02
    # from a mapping there is no folder to look in: the shipped files only
    error = _refused(tiny_scenario)
    assert error.field == "exchange" and "unknown exchange 'my-venue'" in error.reason


def test_cum_is_derived_so_maintenance_is_continuous(tiny_scenario: dict[str, Any]) -> None:
    tiers = [
        {"floor": 0, "cap": 10_000, "mmr": 0.01, "max_leverage": 50},
        {"floor": 10_000, "cap": 100_000, "mmr": 0.025, "max_leverage": 20},
        {"floor": 100_000, "cap": 1_000_000, "mmr": 0.05, "max_leverage": 10},
        {"floor": 1_000_000, "mmr": 0.1, "max_leverage": 5},
    ]
    tiny_scenario["exchange"] = _inline_tiers(tiers)
    table = load_scenario(tiny_scenario).exchange.tier_table("BTC")
    assert table[0].cum == 0.0
    for below, above in itertools.pairwise(table):
        # MM from either side of the floor is the same amount
        assert _mm(above.floor, below) == pytest.approx(_mm(above.floor, above), abs=1e-9)
        assert above.cum > below.cum


def test_a_given_cum_that_keeps_continuity_is_accepted(tiny_scenario: dict[str, Any]) -> None:
    tiers = [
        {"floor": 0, "cap": 50_000, "mmr": 0.01, "cum": 0, "max_leverage": 50},
        {"floor": 50_000, "mmr": 0.02, "cum": 500, "max_leverage": 20},
    ]
    tiny_scenario["exchange"] = _inline_tiers(tiers)
    assert load_scenario(tiny_scenario).exchange.tier_table("BTC")[1].cum == 500.0


def test_a_cum_that_breaks_continuity_is_refused(tiny_scenario: dict[str, Any]) -> None:
    tiers = [
        {"floor": 0, "cap": 50_000, "mmr": 0.01, "cum": 0, "max_leverage": 50},
        {"floor": 50_000, "mmr": 0.02, "cum": 400, "max_leverage": 20},
    ]
    tiny_scenario["exchange"] = _inline_tiers(tiers)
    error = _refused(tiny_scenario)
    assert error.field == "exchange.tiers.default.1.cum"
    assert "continuity" in error.reason and "500" in error.reason


def test_tiers_must_start_at_zero_and_join(tiny_scenario: dict[str, Any]) -> None:
    tiny_scenario["exchange"] = _inline_tiers([{"floor": 10, "mmr": 0.01, "max_leverage": 5}])
    assert _refused(tiny_scenario).field == "exchange.tiers.default.0.floor"
    tiny_scenario["exchange"] = _inline_tiers(
        [
            {"floor": 0, "cap": 100, "mmr": 0.01, "max_leverage": 5},
            {"floor": 200, "mmr": 0.02, "max_leverage": 5},
        ]
    )
    assert _refused(tiny_scenario).field == "exchange.tiers.default.1.floor"


# ------------------------------------------------------------------ leverage and margin


@pytest.mark.parametrize(
    ("leverage", "margin", "allowed"),
    [
        (125.0, 100.0, True),  # notional 12,500: first BTC tier, 125x
        (120.0, 400.0, True),  # notional 48,000: still the first tier
        (101.0, 1_000.0, False),  # notional 101,000: second tier, 100x, though 101 < 125
        (100.0, 1_000.0, True),  # notional 100,000: second tier, exactly its maximum
        (80.0, 10_000.0, False),  # notional 800,000: third tier, 75x
        (30.0, 500_000.0, False),  # notional 15,000,000: fifth tier, 25x
        (25.0, 500_000.0, True),  # notional 12,500,000: fifth tier, 25x
    ],
)
def test_leverage_limit_is_the_tier_of_the_notional(
    tiny_scenario: dict[str, Any], leverage: float, margin: float, allowed: bool
) -> None:
    tiny_scenario["account"]["balance"] = 1_000_000.0
    tiny_scenario["account"]["positions"][0].update(leverage=leverage, margin=margin)
    if allowed:
        scenario = load_scenario(tiny_scenario)
        tier = scenario.exchange.tier_for("BTC", leverage * margin)
        assert tier.floor <= leverage * margin and leverage <= tier.max_leverage
        return
    error = _refused(tiny_scenario)
    assert error.field == "account.positions.0.leverage"
    table = load_scenario(tiny_scenario, {"account.positions.0.leverage": 1}).exchange
    expected = table.tier_for("BTC", leverage * margin).max_leverage
    assert f"maximum {expected:g}x" in error.reason


def test_margins_are_checked_one_by_one_and_together(tiny_scenario: dict[str, Any]) -> None:
    tiny_scenario["account"]["positions"][0]["margin"] = 10_001.0
    tiny_scenario["account"]["positions"][0]["leverage"] = 2.0
    assert _refused(tiny_scenario).field == "account.positions.0.margin"
    tiny_scenario["account"]["positions"] = [
        {"asset": "BTC", "side": "long", "leverage": 2, "margin": 6_000},
        {"asset": "BTC", "side": "short", "leverage": 2, "margin": 4_000},
    ]
    assert load_scenario(tiny_scenario).account.positions[1].sign == -1
    tiny_scenario["account"]["positions"][1]["margin"] = 4_001
    error = _refused(tiny_scenario)
    assert error.field == "account.positions" and "10001" in error.reason


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(tiny_scenario: dict[str, Any], value: bool) -> None:
    tiny_scenario["paths"] = value
    error = _refused(tiny_scenario)
    assert error.field == "paths" and "must be a number" in error.reason


# ------------------------------------------------------------------ correlation


def _three_assets(tiny_scenario: dict[str, Any], correlation: dict[str, float]) -> dict:
    tiny_scenario["market"]["assets"]["ETH"] = {"price": 2500.0, "vol": 0.75}
    tiny_scenario["market"]["assets"]["SOL"] = {"price": 150.0, "vol": 0.9}
    tiny_scenario["market"]["correlation"] = correlation
    return tiny_scenario


def test_correlation_by_pair_name_in_either_order(tiny_scenario: dict[str, Any]) -> None:
    data = _three_assets(tiny_scenario, {"ETH-BTC": 0.8, "BTC-SOL": 0.6})
    matrix = load_scenario(data).market.correlation_matrix()
    expected = np.array([[1.0, 0.8, 0.6], [0.8, 1.0, 0.0], [0.6, 0.0, 1.0]])
    np.testing.assert_array_equal(matrix, expected)


def test_a_matrix_that_is_not_psd_is_refused(tiny_scenario: dict[str, Any]) -> None:
    correlation = {"BTC-ETH": 0.9, "BTC-SOL": 0.9, "ETH-SOL": -0.9}
    matrix = np.array([[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]])
    smallest = np.linalg.eigvalsh(matrix).min()
    assert smallest < 0  # the oracle: each pair is valid, the matrix is not
    error = _refused(_three_assets(tiny_scenario, correlation))
    assert error.field == "market.correlation"
    assert "positive semi-definite" in error.reason
    assert f"{smallest:.3g}" in error.reason


def test_a_singular_psd_matrix_is_accepted(tiny_scenario: dict[str, Any]) -> None:
    # perfectly correlated BTC and ETH, SOL opposite to both: rank one, eigenvalues 3, 0, 0
    correlation = {"BTC-ETH": 1.0, "BTC-SOL": -1.0, "ETH-SOL": -1.0}
    matrix = load_scenario(_three_assets(tiny_scenario, correlation)).market.correlation_matrix()
    np.testing.assert_allclose(np.linalg.eigvalsh(matrix), [0.0, 0.0, 3.0], atol=1e-12)


def test_the_same_pair_twice_must_agree(tiny_scenario: dict[str, Any]) -> None:
    data = _three_assets(tiny_scenario, {"BTC-ETH": 0.5, "ETH-BTC": 0.5})
    assert load_scenario(data).market.correlation_matrix()[1, 0] == 0.5
    data["market"]["correlation"]["ETH-BTC"] = 0.4
    assert _refused(data).field == "market.correlation.ETH-BTC"


# ------------------------------------------------------------------ round trip, digest


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_round_trip_through_a_mapping(path: Path) -> None:
    scenario = load_scenario(path)
    mapping = scenario.to_mapping()
    assert json.loads(json.dumps(mapping)) == mapping  # plain JSON
    assert isinstance(mapping["exchange"], dict)  # the exchange is written inline
    again = load_scenario(mapping)
    assert again == scenario
    assert again.digest() == scenario.digest()


def test_round_trip_through_yaml_text(tmp_path: Path, tiny_scenario: dict[str, Any]) -> None:
    scenario = load_scenario(tiny_scenario, ["step=0.1h", "horizon=1.2h"])
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(scenario.to_mapping()), encoding="utf-8")
    assert load_scenario(path) == scenario


def test_digest_is_stable(tiny_scenario: dict[str, Any]) -> None:
    first = load_scenario(tiny_scenario).digest()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    reordered = dict(reversed(list(copy.deepcopy(tiny_scenario).items())))
    assert load_scenario(reordered).digest() == first
    assert load_scenario(tiny_scenario, {"paths": 200}).digest() == first  # same value


@pytest.mark.parametrize(
    "override",
    [
        "seed=2",
        "paths=201",
        "name=other",
        "step=30min",
        "market.assets.BTC.vol=0.61",
        "market.assets.BTC.jumps.std=0.051",
        "market.assets.BTC.wicks.recovery=0.8",
        "account.positions.0.leverage=11",
        "account.positions.0.side=short",
        "account.balance=10001",
        "modes=[cross, isolated]",
        "ruin.equity_fraction=0.4",
        "exchange.taker_fee=0.0004",
        "exchange.tiers.BTC.1.max_leverage=99",
    ],
)
def test_digest_changes_with_any_input(tiny_scenario: dict[str, Any], override: str) -> None:
    scenario = load_scenario(tiny_scenario)
    changed = load_scenario(scenario.to_mapping(), [override])
    assert changed != scenario
    assert changed.digest() != scenario.digest()


# ------------------------------------------------------------------ files


def test_missing_file(tmp_path: Path) -> None:
    error = _refused(tmp_path / "nope.yaml")
    assert error.field.endswith("nope.yaml") and "does not exist" in error.reason


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hacked']\n", encoding="utf-8")
    error = _refused(path)
    assert "not valid YAML" in error.reason


def test_errors_belong_to_the_project_hierarchy() -> None:
    assert issubclass(ScenarioError, MarginSimError)


def test_an_edited_exchange_file_is_read_again(tmp_path: Path) -> None:
    folder = tmp_path / "exchanges"
    folder.mkdir()
    path = folder / "venue.yaml"
    path.write_text(yaml.safe_dump({"rule": "okx", "taker_fee": 0.0005}), encoding="utf-8")
    first = load_exchange("venue", base_dir=tmp_path)
    first["taker_fee"] = 0.5  # the caller's copy; the next load must not see it
    assert load_exchange("venue", base_dir=tmp_path)["taker_fee"] == 0.0005
    path.write_text(yaml.safe_dump({"rule": "okx", "taker_fee": 0.00042}), encoding="utf-8")
    assert load_exchange("venue", base_dir=tmp_path)["taker_fee"] == 0.00042


def test_override_inside_a_named_exchange_starts_from_its_file() -> None:
    base = load_scenario("params/scenarios/baseline.yaml")
    changed = load_scenario(
        "params/scenarios/baseline.yaml",
        ["exchange.funding.rate=0.0003", "exchange.taker_fee=0.0004"],
    )
    assert changed.exchange.funding.rate == 0.0003
    assert changed.exchange.taker_fee == 0.0004
    assert changed.exchange.name == base.exchange.name
    assert changed.exchange.tiers == base.exchange.tiers


def _documented_fields(model: type) -> dict[str, str]:
    """Field name -> description from the numpydoc ``Attributes`` sections along the MRO."""
    described: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        doc = inspect.cleandoc(klass.__doc__ or "")
        _, found, body = doc.partition("Attributes\n----------\n")
        if not found:
            continue
        names: list[str] = []
        for line in body.splitlines():
            if line and not line.startswith(" "):
                names = [n.strip() for n in line.split(" : ")[0].split(",")]
                described.update(dict.fromkeys(names, ""))
            elif line.strip() and names:
                for name in names:
                    described[name] += line.strip() + " "
    return described


def test_every_scenario_field_is_documented() -> None:
    from pydantic import BaseModel

    import margin_sim.scenario as module

    models = [
        klass
        for _, klass in inspect.getmembers(module, inspect.isclass)
        if issubclass(klass, BaseModel)
        and klass.__module__ == module.__name__
        and not klass.__name__.startswith("_")
    ]
    assert len(models) >= 10
    missing = [
        f"{model.__name__}.{field}"
        for model in models
        for field in model.model_fields
        if not _documented_fields(model).get(field, "").strip()
    ]
    assert missing == []
