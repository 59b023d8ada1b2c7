"""Redis URLs, plain and `redis+sentinel://`: what they name, and one line per mistake."""

from __future__ import annotations

import pytest

from services.redisurl import RedisUrlError, SentinelUrl, check, parse_sentinel
from services.settings import CommonSettings, SettingsError, load


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database():
    url = "redis+sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26381/wan22-main/3"
    assert parse_sentinel(url) == SentinelUrl(
        sentinels=(("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381)),
        master="wan22-main",
        db=3,
        password="s@cret",
    )


def test_user_database_default_and_a_password_of_the_sentinels_own():
    url = "redis+sentinel://app:pw@s1:1,s2:2/m?sentinel_password=sp"
    parsed = parse_sentinel(url)
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("app", "pw", "sp")
    assert (parsed.master, parsed.db, parsed.sentinels) == ("m", 0, (("s1", 1), ("s2", 2)))
    assert parse_sentinel("redis+sentinel://s1/m/").db == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///wan22", "needs one or more sentinels"),
        ("redis+sentinel://s1,,s2/wan22", "needs one or more sentinels"),
        ("redis+sentinel://s1:26379", "needs the master name"),
        ("redis+sentinel://s1:26379/", "needs the master name"),
        ("redis+sentinel://s1:port/wan22", "the port must be a number"),
        ("redis+sentinel://s1:70000/wan22", "the port must be a number"),
        ("redis+sentinel://[::1]x/wan22", "is not host[:port]"),
        ("redis+sentinel://[::1/wan22", "Invalid IPv6"),
        ("redis+sentinel://s1/wan22/zero", "must be a number, not 'zero'"),
        ("redis+sentinel://s1/wan22?ssl=true", "unknown option 'ssl'"),
        ("http://localhost:6379", "must start with redis://"),
    ],
)
def test_a_bad_url_is_one_line_saying_what_is_wrong(url, says):
    with pytest.raises(RedisUrlError, match=says.replace("[", r"\[")):
        check(url)


def test_the_setting_names_the_variable_and_never_the_password():
    with pytest.raises(SettingsError) as caught:
        load(CommonSettings, {"WAN22_REDIS_URL": "redis+sentinel://:hunter2@s1:x/m"})
    assert str(caught.value).startswith("WAN22_REDIS_URL: sentinel 's1:x'")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://u:p@host:6380/1", "unix:///run/redis.sock", "redis+sentinel://s/m"]
)
def test_every_supported_form_is_a_valid_setting(url):
    assert load(CommonSettings, {"WAN22_REDIS_URL": url}).redis_url == url
