"""SLA policies and clocks: targets per priority, calendar or business time, deadlines.

A ticket has three clocks: ``first_response`` (created → first human reply),
``next_response`` (oldest unanswered customer message → next human reply) and
``resolution`` (created or reopened → resolved). Resolving a ticket stops the response
clocks without meeting them (:meth:`SlaPolicies.cancel`); reopening one that no human has
answered restarts its first response. A clock's deadline is its start plus
the target, counted in calendar time or, for ``business_hours`` policies, only inside the
configured working hours (timezone, weekdays, holidays), so a clock started on Friday
evening pauses over the weekend. Deadlines are plain numbers stored on the ticket and in
a Redis sorted set; nothing here holds timers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import ConfigError, EscalationConfig, SlaPolicyConfig

CLOCKS = ("first_response", "next_response", "resolution")
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("mention", "dm")  # a ticket's channel (escalation.tickets)
_TARGET = {
    "first_response": "first_response_min",
    "next_response": "next_response_min",
    "resolution": "resolution_min",
}


def bump(priority: str) -> str:
    """One level up (a breach makes a ticket more urgent); urgent stays urgent."""
    i = PRIORITIES.index(priority) if priority in PRIORITIES else 1
    return PRIORITIES[min(i + 1, len(PRIORITIES) - 1)]


def _hhmm(s: str, what: str) -> dt.time:
    try:
        h, m = s.split(":")
        return dt.time(int(h), int(m))
    except ValueError as e:
        raise ConfigError(f"escalation.{what}: expected HH:MM, got {s!r}") from e


class BusinessCalendar:
    """Working hours in a timezone; ``add`` counts only working seconds."""

    def __init__(
        self,
        timezone: str = "UTC",
        days: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
        start: str = "09:00",
        end: str = "18:00",
        holidays: list[str] | tuple[str, ...] = (),
    ) -> None:
        try:
            self.tz = ZoneInfo(timezone)
        except Exception as e:
            raise ConfigError(f"escalation.timezone: unknown timezone {timezone!r}") from e
        # Python's weekday numbers, Monday 0: an ISO 7 (Sunday) would silently never match.
        bad = [d for d in days if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6]
        if bad:
            raise ConfigError(
                f"escalation.business_days: expected weekdays 0 (Monday) to 6 (Sunday), got {bad}"
            )
        self.days = frozenset(days)
        self.start = _hhmm(start, "business_start")
        self.end = _hhmm(end, "business_end")
        if self.end <= self.start:
            raise ConfigError("escalation.business_end: must be after business_start")
        try:
            self.holidays = frozenset(dt.date.fromisoformat(h) for h in holidays)
        except ValueError as e:
            raise ConfigError("escalation.holidays: expected ISO dates (YYYY-MM-DD)") from e

    def _window(self, day: dt.date) -> tuple[float, float] | None:
        if day.weekday() not in self.days or day in self.holidays:
            return None
        a = dt.datetime.combine(day, self.start, self.tz).timestamp()
        b = dt.datetime.combine(day, self.end, self.tz).timestamp()
        return a, b

    def add(self, start: float, seconds: float) -> float:
        """The moment ``seconds`` of working time after ``start``."""
        remaining = max(0.0, seconds)
        t = start
        day = dt.datetime.fromtimestamp(start, self.tz).date()
        for _ in range(3700):  # ten years of days: a calendar with no working day ends here
            w = self._window(day)
            if w is not None and t < w[1]:
                s = max(t, w[0])
                avail = w[1] - s
                if remaining <= avail:
                    return s + remaining
                remaining -= avail
            day += dt.timedelta(days=1)
            t = dt.datetime.combine(day, dt.time(0), self.tz).timestamp()
        raise ConfigError("escalation: the business calendar has no working hours")


@dataclass(slots=True)
class Clock:
    """One SLA clock of one ticket. ``gen`` grows on every (re)start so alerts of an
    earlier run of the clock are recognised as stale."""

    gen: int = 0
    start: float | None = None
    due: float | None = None
    at_risk_at: float | None = None
    stopped_at: float | None = None
    met: bool | None = None
    at_risk_fired: bool = False
    breached: bool = False

    @property
    def running(self) -> bool:
        return self.start is not None and self.stopped_at is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clock:
        return cls(**d)


class SlaPolicies:
    """Resolves the policy of a ticket and computes its deadlines."""

    def __init__(self, cfg: EscalationConfig) -> None:
        self.cfg = cfg
        self.calendar = BusinessCalendar(
            cfg.timezone, cfg.business_days, cfg.business_start, cfg.business_end, cfg.holidays
        )
        if not 0 < cfg.at_risk_share < 1:
            raise ConfigError("escalation.at_risk_share: must be between 0 and 1")
        self._check_policies()

    def _check_policies(self) -> None:
        """Refuse at start what would otherwise fail or mislead on every ticket: a target
        of zero minutes breaches a ticket as it opens, a priority or channel no ticket has
        never applies, and business hours with no working day cannot give a deadline."""
        named = [(f"policies.{prio}", prio, p) for prio, p in self.cfg.policies.items()]
        for where, by_prio in self.cfg.overrides.items():
            _account, slash, channel = where.partition("/")
            if slash and channel not in CHANNELS:
                raise ConfigError(
                    f"escalation.overrides.{where}: the channel after '/' must be one of "
                    f"{', '.join(CHANNELS)}"
                )
            named += [(f"overrides.{where}.{prio}", prio, p) for prio, p in by_prio.items()]
        for where, prio, p in named:
            if prio not in PRIORITIES:
                raise ConfigError(
                    f"escalation.{where}: unknown priority (expected one of {', '.join(PRIORITIES)})"
                )
            for attr in _TARGET.values():
                if not getattr(p, attr) > 0:
                    raise ConfigError(f"escalation.{where}.{attr}: must be greater than 0 minutes")
        if not self.calendar.days and any(p.business_hours for _w, _p, p in named):
            raise ConfigError(
                "escalation.business_days: a policy counts business hours, but no day is a "
                "working day"
            )

    def policy(self, priority: str, account: str = "", channel: str = "") -> SlaPolicyConfig:
        for key in (f"{account}/{channel}", account):
            p = self.cfg.overrides.get(key, {}).get(priority)
            if p is not None:
                return p
        return (
            self.cfg.policies.get(priority) or self.cfg.policies.get("normal") or SlaPolicyConfig()
        )

    def target_s(self, policy: SlaPolicyConfig, clock: str) -> float:
        return float(getattr(policy, _TARGET[clock])) * 60.0

    def _at(self, policy: SlaPolicyConfig, start: float, seconds: float) -> float:
        return self.calendar.add(start, seconds) if policy.business_hours else start + seconds

    def schedule(self, c: Clock, policy: SlaPolicyConfig, clock: str) -> None:
        """(Re)compute a running clock's deadlines from its start under ``policy``."""
        if c.start is None:
            return
        target = self.target_s(policy, clock)
        c.due = self._at(policy, c.start, target)
        c.at_risk_at = self._at(policy, c.start, target * self.cfg.at_risk_share)

    def start(self, c: Clock, policy: SlaPolicyConfig, clock: str, now: float) -> None:
        c.gen += 1
        c.start, c.stopped_at, c.met = now, None, None
        c.at_risk_fired = c.breached = False
        self.schedule(c, policy, clock)

    @staticmethod
    def stop(c: Clock, now: float) -> None:
        if not c.running:
            return
        c.stopped_at = now
        c.met = c.due is None or now <= c.due

    @staticmethod
    def cancel(c: Clock, now: float) -> None:
        """Stop a response clock that no human reply answered (the ticket was resolved):
        missed if its deadline had passed, else not applicable (``met`` None), never met."""
        if not c.running:
            return
        c.stopped_at = now
        c.met = False if c.due is not None and now > c.due else None

    def promise_minutes(self, priority: str, account: str = "", channel: str = "") -> float:
        return self.policy(priority, account, channel).first_response_min
