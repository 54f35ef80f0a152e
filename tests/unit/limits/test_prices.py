"""Prices, costs, periods and the merging of per-caller overrides with the defaults (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from app.auth.repository import CallerOverrides
from app.core.config import LimitSettings
from app.limits import service

SETTINGS = LimitSettings()
NO_OVERRIDES = CallerOverrides(None, None, None, None)


class TestPrices:
    def test_known_models_use_their_price(self) -> None:
        assert service.render_cost("sora-2", 4, SETTINGS) == Decimal("0.40")
        assert service.render_cost("sora-2-pro", 12, SETTINGS) == Decimal("3.60")

    def test_unknown_models_pay_the_highest_price(self) -> None:
        assert service.price_per_second("sora-3-preview", SETTINGS) == Decimal("0.3")

    def test_decimal_sums_are_exact(self) -> None:
        # With floats, 0.1*4 three times is 1.2000000000000002 and a $1.20 budget would refuse the third.
        assert sum((service.render_cost("sora-2", 4, SETTINGS) for _ in range(3)), Decimal(0)) == Decimal("1.2")

    def test_a_price_table_must_not_be_empty_or_negative(self) -> None:
        with pytest.raises(ValidationError):
            LimitSettings(prices_usd_per_second={})
        with pytest.raises(ValidationError):
            LimitSettings(prices_usd_per_second={"sora-2": -1})


class TestPeriods:
    def test_a_day_ends_the_next_midnight(self) -> None:
        start = datetime(2026, 11, 25, tzinfo=UTC)
        assert service.period_end(start, "day") == datetime(2026, 11, 26, tzinfo=UTC)

    @pytest.mark.parametrize(("month", "expected"), [(11, (2026, 12)), (12, (2027, 1))])
    def test_a_month_ends_at_the_next_month(self, month: int, expected: tuple[int, int]) -> None:
        start = datetime(2026, month, 1, tzinfo=UTC)
        assert service.period_end(start, "month") == datetime(*expected, 1, tzinfo=UTC)


class TestEffectiveLimits:
    def test_defaults_apply_without_overrides(self) -> None:
        limits = service.effective_limits(NO_OVERRIDES, SETTINGS)
        assert limits == service.EffectiveLimits(600, 20, Decimal("100.0"), "day")

    def test_overrides_win_including_zero(self) -> None:
        overrides = CallerOverrides(5, 0, Decimal("0"), "month")
        assert service.effective_limits(overrides, SETTINGS) == service.EffectiveLimits(5, 0, Decimal("0"), "month")
