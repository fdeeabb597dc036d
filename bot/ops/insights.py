"""Insights per account: rising terms, top intents, auto-answer rate, first responses.

Counters live in hourly (``ops.terms_bucket_s``) buckets that expire on their own:

* ``ops:terms:{account}:{all|neg}:{bucket}`` hash term → messages containing it;
* ``ops:stats:{account}:{bucket}`` hash: ``msgs``, ``neg``, ``d:<decision>``, ``i:<intent>``;
* ``ops:fr:{account}`` zset of first-response samples (score = when the human replied).

"Rising" compares the recent window (``ops.insights_recent_s``, the current bucket
included) with the baseline window just before it (``ops.insights_baseline_s``), scaled
to the same length: score = (recent + 1) / (expected + 1), with add-one smoothing so a
term never seen before needs a few mentions to rank.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from typing import Any

from bot.config import OpsConfig
from bot.ops.spikes import ops_key
from bot.ops.terms import terms as message_terms
from bot.redis import Keys, Redis, as_str

# Decisions that did not need an answer at all; left out of the auto-answer rate.
NOT_ANSWERABLE = frozenset({"ignore", "recorded", "state"})
MIN_RISING_COUNT = 3
FIRST_RESPONSE_KEEP_S = 30 * 24 * 3600


def _ttl(cfg: OpsConfig) -> int:
    return cfg.insights_recent_s + cfg.insights_baseline_s + 2 * cfg.terms_bucket_s


def queue_counts(
    tx: Any,
    keys: Keys,
    cfg: OpsConfig,
    *,
    account: str,
    text: str,
    intent: str,
    negative: bool,
    decision: str,
    now: float,
) -> None:
    """Add one message's counters to the Redis pipeline ``tx``."""
    bucket = str(int(now // cfg.terms_bucket_s))
    ttl = _ttl(cfg)
    stats = ops_key(keys, "stats", account, bucket)
    tx.hincrby(stats, "msgs", 1)
    tx.hincrby(stats, f"d:{decision}", 1)
    tx.hincrby(stats, f"i:{intent}", 1)
    if negative:
        tx.hincrby(stats, "neg", 1)
    tx.expire(stats, ttl)
    found = message_terms(text)
    for scope in ("all", "neg") if negative else ("all",):
        key = ops_key(keys, "terms", account, scope, bucket)
        for t in found:
            tx.hincrby(key, t, 1)
        if found:
            tx.expire(key, ttl)


async def record_first_response(
    redis: Redis, keys: Keys, *, account: str, seconds: float, now: float
) -> None:
    """One ticket's first human response time (created → first human reply)."""
    key = ops_key(keys, "fr", account)
    tx = redis.pipeline(transaction=True)
    tx.zadd(key, {f"{seconds:.3f}:{secrets.token_hex(4)}": now})
    tx.zremrangebyscore(key, "-inf", now - FIRST_RESPONSE_KEEP_S)
    tx.expire(key, FIRST_RESPONSE_KEEP_S)
    await tx.execute()


def rising(
    recent: Counter[str], base: Counter[str], *, ratio: float, limit: int
) -> list[dict[str, Any]]:
    """Terms whose recent count beats the baseline scaled to the recent window."""
    rows: list[dict[str, Any]] = []
    for term, n in recent.items():
        if n < MIN_RISING_COUNT:
            continue
        expected = base.get(term, 0) * ratio
        score = (n + 1) / (expected + 1)
        if score > 1.5:
            rows.append(
                {"term": term, "count": n, "expected": round(expected, 2), "score": round(score, 2)}
            )
    rows.sort(key=lambda r: (-r["score"], -r["count"], r["term"]))
    return rows[:limit]


def _percentile(sorted_vals: list[float], q: float) -> float:
    i = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[i]


async def account_insights(
    redis: Redis, keys: Keys, cfg: OpsConfig, account: str, *, now: float, limit: int = 15
) -> dict[str, Any]:
    bs = cfg.terms_bucket_s
    cur = int(now // bs)
    n_recent = max(1, cfg.insights_recent_s // bs)
    n_base = max(1, cfg.insights_baseline_s // bs)
    recent_b = range(cur - n_recent + 1, cur + 1)
    base_b = range(cur - n_recent - n_base + 1, cur - n_recent + 1)

    tx = redis.pipeline(transaction=False)
    for b in (*recent_b, *base_b):
        tx.hgetall(ops_key(keys, "stats", account, str(b)))
        tx.hgetall(ops_key(keys, "terms", account, "all", str(b)))
        tx.hgetall(ops_key(keys, "terms", account, "neg", str(b)))
    tx.zrangebyscore(ops_key(keys, "fr", account), now - cfg.insights_recent_s, "+inf")
    res = await tx.execute()
    fr_raw = res.pop()

    def add(dst: Counter[str], h: dict[Any, Any]) -> None:
        for k, v in h.items():
            dst[as_str(k)] += int(v)

    stats: Counter[str] = Counter()
    all_r: Counter[str] = Counter()
    neg_r: Counter[str] = Counter()
    all_b: Counter[str] = Counter()
    neg_b: Counter[str] = Counter()
    for i in range(len(recent_b)):
        add(stats, res[3 * i])
        add(all_r, res[3 * i + 1])
        add(neg_r, res[3 * i + 2])
    for i in range(len(recent_b), len(recent_b) + len(base_b)):
        add(all_b, res[3 * i + 1])
        add(neg_b, res[3 * i + 2])

    ratio = n_recent / n_base
    msgs = stats.get("msgs", 0)
    decisions = {k[2:]: v for k, v in stats.items() if k.startswith("d:")}
    intents = Counter({k[2:]: v for k, v in stats.items() if k.startswith("i:")})
    answerable = sum(v for d, v in decisions.items() if d not in NOT_ANSWERABLE)
    fr = sorted(float(as_str(m).split(":", 1)[0]) for m in fr_raw)
    return {
        "account": account,
        "now": now,
        "window": {"recent_s": n_recent * bs, "baseline_s": n_base * bs, "bucket_s": bs},
        "messages": msgs,
        "negative": stats.get("neg", 0),
        "negative_share": round(stats.get("neg", 0) / msgs, 4) if msgs else 0.0,
        "rising_terms": {
            "negative": rising(neg_r, neg_b, ratio=ratio, limit=limit),
            "all": rising(all_r, all_b, ratio=ratio, limit=limit),
        },
        "top_terms": {
            "negative": [{"term": t, "count": n} for t, n in neg_r.most_common(limit)],
            "all": [{"term": t, "count": n} for t, n in all_r.most_common(limit)],
        },
        "top_intents": [
            {"intent": i, "count": n, "share": round(n / msgs, 4)}
            for i, n in intents.most_common(limit)
        ],
        "decisions": dict(sorted(decisions.items())),
        "auto_answer_rate": round(decisions.get("answer", 0) / answerable, 4)
        if answerable
        else None,
        "first_response": {
            "count": len(fr),
            "median_s": round(_percentile(fr, 0.5), 3) if fr else None,
            "p90_s": round(_percentile(fr, 0.9), 3) if fr else None,
            "mean_s": round(sum(fr) / len(fr), 3) if fr else None,
        },
    }
