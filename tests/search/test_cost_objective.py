"""`--objective cost` ranks by dollars when the profile has a cited list price and says when it has none
(issue #14 item 6)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.paths import builtin_names
from moesim.search.rank import SECONDS_PER_HOUR, search
from moesim.search.report import search_report
from moesim.specs.load import load_hardware

from tests.search.search_fixtures import ODD_MOE, build


def _priced(price):
    scenario = build(ODD_MOE, devices=12)
    return dataclasses.replace(scenario, hardware=dataclasses.replace(scenario.hardware, price_per_device_hour_usd=price,
                                                                      price_source="test price"))


def test_cost_ranks_by_usd_per_step_and_reports_per_trillion_tokens():
    scenario = _priced(2.5)
    result = search(scenario, "cost")
    assert result.objective_unit == "USD/step"
    expected = result.step_time_s * 12 * 2.5 / SECONDS_PER_HOUR
    assert np.allclose(result.objective_value, expected) and np.all(np.diff(result.objective_value) >= 0)
    top = result.summary(0)
    tokens = scenario.training.global_batch_sequences * scenario.training.seq_len
    assert top["usd_per_step"] == pytest.approx(expected[0])
    assert top["usd_per_trillion_tokens"] == pytest.approx(expected[0] / tokens * 1e12)
    assert "2.5 USD per device-hour (test price)" in search_report(scenario, objective="cost", top=1)["cost_note"]


def test_cost_without_a_price_says_so():
    report = search_report(_priced(None), objective="cost", top=1)
    assert report["objective_unit"] == "device-s/step"
    assert "has no price_per_device_hour_usd" in report["cost_note"]
    assert report["results"][0]["usd_per_step"] is None


def test_shipped_prices_are_cited_with_a_url_and_date():
    """Every shipped price names the page it came from and when; profiles without one stay absent."""
    for name in builtin_names("hardware_profiles"):
        hw = load_hardware(name)
        if hw.price_per_device_hour_usd is None:
            assert hw.price_source == ""
            continue
        assert hw.price_per_device_hour_usd > 0
        assert "https://" in hw.price_source and "20" in hw.price_source  # a URL and a year
    assert load_hardware("tpu-v4").price_per_device_hour_usd == 3.22  # cloud.google.com/tpu/pricing, 2022-08-11
