"""Credentials never land on disk (spline_lstm.core.secrets): masking and moving passwords."""
from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spline_lstm.core import secrets
from spline_lstm.core.errors import TrackingFailed
from spline_lstm.core.environment import MLFLOW_PASSWORD as PASSWORD_ENV
from spline_lstm.core.environment import MLFLOW_USERNAME as USERNAME_ENV
from spline_lstm.core.secrets import (MASKED, MaskingFilter, hide_passwords,
                                      known_secrets, mask_obj, mask_text, mask_uri, take_credentials)

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    return monkeypatch


@pytest.mark.parametrize("uri,masked", [
    ("http://alice:s3cret@host:5000", "http://alice:***@host:5000"),
    ("postgresql+psycopg2://u:p@db/mlflow", "postgresql+psycopg2://u:***@db/mlflow"),
    ("https://host:5000/path", "https://host:5000/path"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("http://user@host", "http://user@host"),
    ("see http://a:b@h1 and https://c:d@h2/x", "see http://a:***@h1 and https://c:***@h2/x"),
    ("http://u:@host", "http://u:***@host"),
])
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked


def test_mask_uri_is_idempotent():
    once = mask_uri("http://alice:pw@host")
    assert mask_uri(once) == once


def test_known_secrets_are_the_password_in_every_spelling(env):
    env.setenv(PASSWORD_ENV, "p@ss word")
    found = known_secrets()
    assert "p@ss word" in found and "p%40ss%20word" in found
    assert found == sorted(found, key=len, reverse=True)


@pytest.mark.parametrize("value", ["", "abc", MASKED])
def test_short_or_masked_passwords_are_not_secrets(env, value):
    env.setenv(PASSWORD_ENV, value)
    assert known_secrets() == []


def test_mask_text_hides_the_known_password_anywhere(env):
    env.setenv(PASSWORD_ENV, "hunter22")
    assert mask_text("the password is hunter22, really hunter22") == "the password is ***, really ***"
    assert mask_text("plain text") == "plain text"


def test_mask_obj_masks_keys_values_and_keeps_container_types(env):
    env.setenv(PASSWORD_ENV, "topsecret")
    obj = {"uri": "http://u:topsecret@h", "topsecret": [1, ("topsecret", 2.5)], "n": None}
    out = mask_obj(obj)
    assert out == {"uri": "http://u:***@h", "***": [1, ("***", 2.5)], "n": None}
    assert isinstance(out["***"][1], tuple)
    assert obj["uri"] == "http://u:topsecret@h"  # a copy: the input is untouched


def test_hide_passwords_moves_the_password_to_the_environment(env):
    args = ["+preset=smoke", "tracking.uri=http://bob:pw1234@host:5000", "seed=3"]
    assert hide_passwords(args) == ["+preset=smoke", "tracking.uri=http://bob:***@host:5000", "seed=3"]
    import os

    assert os.environ[PASSWORD_ENV] == "pw1234" and os.environ[USERNAME_ENV] == "bob"


def test_hide_passwords_leaves_an_already_masked_uri_and_the_environment_alone(env):
    assert hide_passwords(["tracking.uri=http://bob:***@h"]) == ["tracking.uri=http://bob:***@h"]
    import os

    assert PASSWORD_ENV not in os.environ


def test_take_credentials_strips_userinfo(env):
    import os

    assert take_credentials("http://carol:pw5678@h:1/x") == ("http://h:1/x", "carol")
    assert os.environ[PASSWORD_ENV] == "pw5678"
    assert take_credentials("http://h:1") == ("http://h:1", None)


def test_a_masked_password_without_the_environment_is_tracking_failed(env):
    with pytest.raises(TrackingFailed) as info:
        take_credentials("http://carol:***@h")
    assert info.value.code == 8 and PASSWORD_ENV in str(info.value)


def test_a_masked_password_with_the_environment_is_used(env):
    env.setenv(PASSWORD_ENV, "frompw")
    assert take_credentials("http://carol:***@h") == ("http://h", "carol")


def test_the_logging_filter_masks_messages_and_tracebacks(env):
    env.setenv(PASSWORD_ENV, "leakyvalue")
    try:
        raise ValueError("connect failed with leakyvalue")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "uri %s", ("http://u:leakyvalue@h",),
                                   sys.exc_info())
    assert MaskingFilter().filter(record) is True
    assert record.getMessage() == "uri http://u:***@h"
    assert "leakyvalue" not in record.exc_text and "***" in record.exc_text


@settings(max_examples=60, deadline=None)
@given(user=st.from_regex(r"[a-z]{1,8}", fullmatch=True), password=st.from_regex(r"[A-Za-z0-9!$%]{1,16}", fullmatch=True),
       host=st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,4})?", fullmatch=True))
def test_no_userinfo_password_survives_masking(user, password, host):
    uri = f"https://{user}:{password}@{host}:443/api"
    masked = mask_uri(uri)
    assert masked == f"https://{user}:***@{host}:443/api"
    assert secrets._USERINFO.search(masked).group(2) == MASKED
