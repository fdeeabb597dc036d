"""Fake platform APIs for the tests and the outbound benchmark: small aiohttp apps that
check auth and request shapes as each platform documents them and record what they got."""

from tests.fakes.base import Call, FakePlatform, max_in_window
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.weibo import FakeWeibo
from tests.fakes.x import FakeX

__all__ = ["Call", "FakeMastodon", "FakePlatform", "FakeWeibo", "FakeX", "max_in_window"]
