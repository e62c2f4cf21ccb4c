"""Connections: what users may define, and what is refused with a message naming the field."""

import json

import pytest

from datalabs_volumes.remotes import (
    REDACTED,
    InvalidConnection,
    check_host,
    merge_patch,
    parse_networks,
    scrub,
    validate,
)

LOOPBACK = parse_networks(["127.0.0.1/32"])
TOKEN = json.dumps(
    {"access_token": "ya29.A", "token_type": "Bearer", "refresh_token": "1//R", "expiry": "x"}
)


def webdav(**options):
    return {
        "name": "my-dav",
        "backend": "webdav",
        "options": {"url": "http://127.0.0.1:8080", "user": "u", "pass": "p", **options},
    }


def refused(doc, field, networks=LOOPBACK):
    with pytest.raises(InvalidConnection) as e:
        validate(doc, networks, resolve=False)
    assert e.value.field == field, e.value
    return e.value.message


def test_a_webdav_connection_on_an_allowed_host_is_accepted():
    c = validate(webdav(vendor="nextcloud"), LOOPBACK)
    assert c.name == "my-dav" and c.backend == "webdav"
    assert dict(c.options) == {
        "url": "http://127.0.0.1:8080",
        "user": "u",
        "pass": "p",
        "vendor": "nextcloud",
    }
    assert not c.writable and c.path == ""


@pytest.mark.parametrize("backend", ["local", "alias", "crypt", "union", "memory", "http", ""])
def test_backends_outside_the_allowlist_are_refused(backend):
    doc = {"name": "x", "backend": backend, "options": {}}
    assert "is not offered" in refused(doc, "backend")


@pytest.mark.parametrize(
    "backend,option",
    [
        ("sftp", "key_file"),
        ("sftp", "ssh"),
        ("sftp", "known_hosts_file"),
        ("sftp", "md5sum_command"),
        ("s3", "env_auth"),
        ("s3", "shared_credentials_file"),
        ("drive", "service_account_file"),
        ("webdav", "bearer_token_command"),
    ],
)
def test_options_reading_local_files_or_running_commands_are_refused(backend, option):
    doc = {"name": "x", "backend": backend, "options": {option: "/etc/passwd"}}
    assert "not an option users may set" in refused(doc, f"options.{option}")


def test_s3_never_uses_the_hubs_own_credentials():
    c = validate(
        {"name": "s", "backend": "s3", "options": {"provider": "Other", "access_key_id": "k"}},
        resolve=False,
    )
    assert c.rclone_parameters()["env_auth"] == "false"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/dav",
        "http://192.168.1.1",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:80",
        "http://0.0.0.0",
        "http://127.0.0.2",
    ],
)
def test_private_loopback_and_link_local_hosts_are_refused(url):
    message = refused(webdav(url=url), "options.url")
    assert "private, loopback or link-local" in message


def test_the_operator_can_allow_a_private_range():
    c = validate(webdav(url="http://10.1.2.3/dav"), parse_networks(["10.1.0.0/16"]))
    assert c.options["url"] == "http://10.1.2.3/dav"
    refused(webdav(url="http://10.2.0.1/dav"), "options.url", parse_networks(["10.1.0.0/16"]))


def test_host_names_are_resolved_before_they_are_checked():
    with pytest.raises(InvalidConnection, match="private, loopback"):
        check_host("localhost", ())
    check_host("localhost", parse_networks(["127.0.0.0/8", "::1/128"]))


@pytest.mark.parametrize(
    "url,problem",
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("ftp://example.org", "http:// or https://"),
        ("http://user:secret@127.0.0.1/", "must not contain a user name"),
    ],
)
def test_urls_must_be_plain_http(url, problem):
    assert problem in refused(webdav(url=url), "options.url")


@pytest.mark.parametrize(
    "name",
    ["", "../etc", "a/b", "UPPER", "-x", "x-", "a" * 41, ".", "..", "a b", "a\nb", "a_b", 7, None],
)
def test_names_that_are_not_plain_folder_names_are_refused(name):
    doc = webdav()
    doc["name"] = name
    assert "not a valid connection name" in refused(doc, "name")


@pytest.mark.parametrize("path", ["../up", "a/../../b", "a\\b", "a\nb", "x\x00"])
def test_paths_that_climb_or_carry_control_characters_are_refused(path):
    doc = webdav()
    doc["path"] = path
    refused(doc, "path")


@pytest.mark.parametrize("value", ["a\nurl = http://evil", "p\r\nx", "tab\there", "nul\x00"])
def test_option_values_cannot_start_a_new_line_in_rclones_config(value):
    assert "line breaks" in refused(webdav(**{"pass": value}), "options.pass")


def test_equals_signs_quotes_and_spaces_are_kept_as_they_are():
    value = """a=b "c" 'd' e;f$(g)`h`"""
    c = validate(webdav(**{"pass": value}), LOOPBACK)
    assert c.options["pass"] == value


def test_unknown_fields_and_wrong_types_are_named():
    doc = webdav()
    doc["mount"] = "/"
    refused(doc, "mount")
    refused(
        {"name": "x", "backend": "ftp", "options": {"host": "127.0.0.1", "port": "x"}},
        "options.port",
    )
    refused(
        {"name": "x", "backend": "ftp", "options": {"host": "127.0.0.1", "tls": "maybe"}},
        "options.tls",
    )
    refused({"name": "x", "backend": "ftp", "options": {}}, "options.host")
    refused({"name": "x", "backend": "webdav", "options": {"url": ["x"]}}, "options.url")
    refused("not an object", "(body)")


@pytest.mark.parametrize("backend", ["dropbox", "drive"])
def test_oauth_backends_take_the_token_from_rclone_authorize(backend):
    c = validate({"name": "cloud", "backend": backend, "options": {"token": TOKEN}})
    assert json.loads(c.options["token"])["refresh_token"] == "1//R"
    assert c.redacted()["options"]["token"] == REDACTED
    message = refused(
        {"name": "c", "backend": backend, "options": {"token": "abc"}}, "options.token"
    )
    assert "rclone authorize" in message


def test_redacted_shows_every_option_but_the_secrets():
    c = validate(webdav(bearer_token="Zq9tokn"), LOOPBACK)
    shown = c.redacted()
    assert shown["options"] == {
        "url": "http://127.0.0.1:8080",
        "user": "u",
        "pass": REDACTED,
        "bearer_token": REDACTED,
    }
    assert "Zq9tokn" not in json.dumps(shown) and '"p"' not in json.dumps(shown)


def test_scrub_removes_secrets_from_error_text_in_every_spelling():
    text = 'failed for pass=s3cr"et and {"pass": "s3cr\\"et"}'
    assert "s3cr" not in scrub(text, ['s3cr"et'])


def test_patch_keeps_secrets_sent_back_redacted_and_removes_nulls():
    c = validate(webdav(vendor="other"), LOOPBACK)
    doc = merge_patch(c, {"options": {"pass": REDACTED, "user": "v", "vendor": None}})
    assert doc["options"] == {"url": "http://127.0.0.1:8080", "user": "v", "pass": "p"}
    with pytest.raises(InvalidConnection):
        merge_patch(c, {"name": "other"})
