"""Hub identity and recipient keys: files, modes, loaders' errors, key ids."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from gateway.envelope.keys import (
    generate_recipient,
    hub_signing_key,
    load_recipient_private,
    load_recipient_public,
    parse_hub_public,
    recipient_kid,
)
from gateway.errors import ConfigError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hub_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = hub_signing_key(state)
    path = state / "hub.key"
    assert _mode(path) == 0o600
    assert path.read_bytes() == key.private_bytes_raw()
    assert len(path.read_bytes()) == 32
    again = hub_signing_key(state)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_a_damaged_hub_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "hub.key").write_bytes(b"\x01" * 31)
    with pytest.raises(ConfigError, match="31 bytes"):
        hub_signing_key(tmp_path)


def test_keygen_writes_a_0600_private_key_and_its_public_key(tmp_path: Path) -> None:
    files = generate_recipient(tmp_path / "keys")
    assert files.private_key == tmp_path / "keys" / "recipient.key"
    assert _mode(files.private_key) == 0o600
    assert len(files.private_key.read_bytes()) == 32
    assert len(files.public_key.read_bytes()) == 32
    private = load_recipient_private(files.private_key)
    public = load_recipient_public(files.public_key)
    assert private.public_key().public_bytes_raw() == public.public_bytes_raw()
    assert files.rkid == hashlib.sha256(public.public_bytes_raw()).digest()[:8]
    assert recipient_kid(public) == files.rkid
    assert not list((tmp_path / "keys").glob("*.tmp"))


def test_keygen_refuses_to_replace_a_key_unless_asked(tmp_path: Path) -> None:
    first = generate_recipient(tmp_path)
    before = first.private_key.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        generate_recipient(tmp_path)
    assert first.private_key.read_bytes() == before
    second = generate_recipient(tmp_path, overwrite=True)
    assert second.private_key.read_bytes() != before
    assert _mode(second.private_key) == 0o600


def test_loaders_name_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as missing:
        load_recipient_private(tmp_path / "nope.key")
    assert str(tmp_path / "nope.key") in str(missing.value)
    short = tmp_path / "short.pub"
    short.write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="16 bytes"):
        load_recipient_public(short)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_recipient_public(tmp_path)  # a directory


def test_hub_public_keys_parse_from_hex(tmp_path: Path) -> None:
    key = hub_signing_key(tmp_path)
    text = key.public_key().public_bytes_raw().hex()
    parsed = parse_hub_public(text, where="--trust hub-1")
    assert parsed.public_bytes_raw() == key.public_key().public_bytes_raw()
    for bad in ("", "zz" * 32, text[:-2]):
        with pytest.raises(ConfigError, match="--trust hub-1"):
            parse_hub_public(bad, where="--trust hub-1")
