"""The order-lookup hook: how the bot asks the shop system about an order.

Request: ``GET {dialog.order_lookup_url}?order=A12345&platform=x&customer_id=6253282
&customer_handle=alice&lang=en`` with ``Authorization: Bearer <secret order_lookup_token>`` (when
set) and ``Accept: application/json``. ``platform``, ``customer_id`` and
``customer_handle`` name who is asking: the platform's user id (stable) and handle
(``customer_handle`` may be empty, e.g. on Weibo). ``lang`` is the reply's language
(``en``, ``zh``).

Response: 200 with ``{"order": "A12345", "status": "shipped", "eta": "2026-11-25",
"tracking_url": "https://..."}`` (``status``: a word of the reply templates' ``statuses``
table, e.g. processing, shipped, delivered, cancelled, returned, else shown as written,
so a shop with statuses of its own should write them in ``lang``;
``eta``: best an ISO date, written out in the reader's format; ``eta`` and
``tracking_url`` optional);
404 when there is no such order. Redirects are not followed (a 3xx is an error: the
request names the customer, and must go to the configured shop only), and an answer
over 64 KiB is an error. The shop MUST also answer 404 for an order that is not
that customer's (not linked to that platform account): anyone can DM the brand an order
number, and the answer carries its status and tracking link. Anything else (other
status, timeout, bad JSON) is an :class:`OrderLookupError` and the bot hands the
question to an agent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import aiohttp

# A12345, AB-123456, #123456, 1234567890
ORDER_RE = re.compile(r"(?<![A-Za-z0-9])(?:#\s?)?([A-Za-z]{1,3}-?\d{4,12}|\d{6,14})(?![A-Za-z0-9])")
# A Chinese mobile number ("call me on 13812345678") is not an order number.
MOBILE_CN_RE = re.compile(r"1[3-9]\d{9}")


def find_order_number(text: str) -> str | None:
    for m in ORDER_RE.finditer(text):
        if MOBILE_CN_RE.fullmatch(m.group(1)) and not m.group(0).startswith("#"):
            continue  # "#13812345678" was meant as an order number
        return m.group(1).upper()
    return None


@dataclass(frozen=True, slots=True)
class OrderInfo:
    order: str
    status: str
    eta: str = ""
    tracking_url: str = ""


# Far above any order record: a shop (or whatever answers at its address) cannot make
# each lookup hold megabytes.
MAX_ANSWER_BYTES = 64 * 1024


class OrderLookupError(Exception):
    """The order system did not give a usable answer."""


class OrderLookup:
    def __init__(
        self, http: aiohttp.ClientSession, url: str, token: str = "", *, timeout_s: float = 2.0
    ) -> None:
        self.http = http
        self.url = url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def lookup(
        self,
        order: str,
        *,
        platform: str,
        customer_id: str,
        customer_handle: str = "",
        lang: str = "",
    ) -> OrderInfo | None:
        """The order, or None when the shop says it does not exist or is not this
        customer's (404)."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        params = {
            "order": order,
            "platform": platform,
            "customer_id": customer_id,
            "customer_handle": customer_handle,
            "lang": lang,
        }
        try:
            async with self.http.get(
                self.url,
                params=params,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            ) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise OrderLookupError(f"HTTP {r.status}")
                # read(n) returns what has arrived, not n bytes: read to the end or the cap.
                raw = bytearray()
                while chunk := await r.content.read(MAX_ANSWER_BYTES + 1 - len(raw)):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise OrderLookupError(f"answer over {MAX_ANSWER_BYTES} bytes")
                data = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as e:
            raise OrderLookupError(type(e).__name__) from e
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise OrderLookupError("response has no status")
        return OrderInfo(
            order=str(data.get("order") or order),
            status=data["status"],
            eta=str(data.get("eta") or ""),
            tracking_url=str(data.get("tracking_url") or ""),
        )
