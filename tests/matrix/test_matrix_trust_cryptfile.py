"""cryptfile against someone who can write its files: planted KDF parameters, older copies, loose passphrase
files; and a locked or missing file that answers what it can without the key.

Files are planted by an independent writer of the format (format 1, as every credbridge before the
generation counter wrote it), so the tests do not trust credbridge's own writer to build the attack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

import pytest

from tests.conftest import CRYPTFILE_PASSPHRASE, SERVING, Helper, Installation, cryptfile_env
from tests.matrix.test_matrix_matching import DIFFERENT_REGISTRY, SAME_REGISTRY, STORED
from tests.support.process import Result, run

LOCKED = b"cryptfile is locked: run 'credbridge unlock'\n"
NOT_FOUND = b"credentials not found in native keychain\n"
SERVER, USERNAME, SECRET = "trust-registry.example:5000", "trust-user", "trust-token-e4d1"
#: What credbridge writes: RFC 9106's second recommended Argon2id setting.
STRONG = {"kdf": "argon2id", "memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}


@pytest.fixture(params=SERVING)
def helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    """A fresh cryptfile unlocked for the session, served by the agent or in process."""
    return Helper(installation.executable("docker-credential-cryptfile"), cryptfile_env(request, request.param))


def credbridge(
    installation: Installation, env: dict[str, str], *args: str, stdin: str = "", timeout: float = 30
) -> Result:
    return run([installation.executable("credbridge"), *args], stdin, env, timeout=timeout)


def cryptfile_helper(installation: Installation, env: dict[str, str]) -> Helper:
    return Helper(installation.executable("docker-credential-cryptfile"), env)


def cryptfile(env: dict[str, str]) -> Path:
    return Path(env["CREDBRIDGE_CRYPTFILE"])


def plant(path: Path, passphrase: str, kdf: dict[str, object], entries: dict[str, dict[str, str]]) -> None:
    """Write a format-1 cryptfile with these KDF parameters, the way credbridge 1.x did."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = os.urandom(16)
    key = derive(kdf, salt, passphrase.encode())
    check = hmac.new(key, b"credbridge cryptfile key check", hashlib.sha256).digest()[:16]
    header = json.dumps(
        {**kdf, "salt": base64.b64encode(salt).decode(), "check": base64.b64encode(check).decode()},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    associated = struct.pack(">4sHI", b"CBCF", 1, len(header)) + header
    nonce = os.urandom(12)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(associated + nonce + AESGCM(key).encrypt(nonce, json.dumps(entries).encode(), associated))
    path.chmod(0o600)


def derive(kdf: dict[str, object], salt: bytes, passphrase: bytes) -> bytes:
    if kdf["kdf"] == "scrypt":
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        return Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(passphrase)
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(
        salt=salt,
        length=32,
        iterations=int(kdf["iterations"]),
        lanes=int(kdf["lanes"]),
        memory_cost=int(kdf["memory_kib"]),
    ).derive(passphrase)


def plant_unopenable(path: Path, kdf: dict[str, object]) -> None:
    """A header whose KDF would run for hours or exhaust memory; what follows it is noise."""
    header = json.dumps(
        {**kdf, "salt": base64.b64encode(os.urandom(16)).decode(), "check": base64.b64encode(os.urandom(16)).decode()}
    ).encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">4sHI", b"CBCF", 1, len(header)) + header + os.urandom(64))
    path.chmod(0o600)


def format_version(path: Path) -> int:
    return struct.unpack_from(">4sH", path.read_bytes())[1]


def store_json(server: str, username: str = USERNAME, secret: str = SECRET) -> str:
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret})


def secret_of(result: Result) -> str:
    assert result.returncode == 0, result.text
    return json.loads(result.stdout)["Secret"]


def assert_one_line(result: Result, *words: str, stream: str = "stdout") -> None:
    text = getattr(result, stream)
    assert result.returncode == 1, result
    assert text.endswith(b"\n") and text.count(b"\n") == 1, text
    assert b"Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word.encode() in text, (word, text)


def passphrase_file(directory: Path, passphrase: str, mode: int = 0o600) -> Path:
    path = directory / "passphrase"
    path.write_text(passphrase + "\n")
    path.chmod(mode)
    return path


# -- 13.12: KDF parameters a planted header chooses ------------------------------------------------


@pytest.mark.parametrize(
    "kdf",
    [
        {"kdf": "argon2id", "memory_kib": 8, "iterations": 1, "lanes": 1},
        {"kdf": "argon2id", "memory_kib": 64 * 1024, "iterations": 1, "lanes": 4},
        {"kdf": "argon2id", "memory_kib": 8 * 1024, "iterations": 3, "lanes": 4},
        {"kdf": "scrypt", "n": 2**10, "r": 8, "p": 1},
    ],
    ids=["argon2id-8KiB-1pass", "argon2id-1pass", "argon2id-8MiB", "scrypt-n1024"],
)
def test_kdf_parameters_below_the_floor_are_refused(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path, kdf: dict[str, object]
) -> None:
    path = cryptfile(locked_env)
    plant(path, CRYPTFILE_PASSPHRASE, kdf, {SERVER: {"Username": USERNAME, "Secret": SECRET}})
    planted = path.read_bytes()
    assert_one_line(
        credbridge(installation, locked_env, "unlock", stdin=CRYPTFILE_PASSPHRASE + "\n"),
        str(path),
        "KDF",
        "below",
        stream="stderr",
    )
    batch = {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE))}
    assert_one_line(cryptfile_helper(installation, batch).get(SERVER), str(path), "KDF", "below")
    assert path.read_bytes() == planted


@pytest.mark.parametrize(
    "kdf",
    [
        {"kdf": "argon2id", "memory_kib": 64 * 1024, "iterations": 100_000, "lanes": 4},
        {"kdf": "argon2id", "memory_kib": 64 * 1024 * 1024, "iterations": 3, "lanes": 4},
        {"kdf": "scrypt", "n": 2**30, "r": 8, "p": 1},
        {"kdf": "scrypt", "n": 2**17, "r": 8, "p": 100_000},
    ],
    ids=["argon2id-hours", "argon2id-64GiB", "scrypt-1TiB", "scrypt-hours"],
)
def test_kdf_parameters_beyond_the_ceiling_are_refused_at_once(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path, kdf: dict[str, object]
) -> None:
    path = cryptfile(locked_env)
    plant_unopenable(path, kdf)
    assert_one_line(
        credbridge(installation, locked_env, "unlock", stdin=CRYPTFILE_PASSPHRASE + "\n", timeout=20),
        str(path),
        "KDF",
        "above",
        stream="stderr",
    )
    batch = {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE))}
    assert_one_line(cryptfile_helper(installation, batch).get(SERVER), str(path), "KDF", "above")


# -- 13.12: an older copy of the file ---------------------------------------------------------------


def test_an_older_copy_is_refused_until_accepted(installation: Installation, helper: Helper) -> None:
    """Copying an older file back would bring an erased token back: every call says so, nothing is written."""
    path = cryptfile(helper.env)
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    older = path.read_bytes()
    assert helper.erase(SERVER).returncode == 0
    assert helper("store", stdin=store_json("other.example")).returncode == 0
    path.write_bytes(older)
    for result in (
        helper.get(SERVER),
        helper.list(),
        helper("store", stdin=store_json("new.example")),
        helper.erase(SERVER),
    ):
        assert_one_line(
            result, str(path), "older", "generation 2", "generation 4", "credbridge unlock --accept-rollback"
        )
    assert path.read_bytes() == older
    refused = credbridge(installation, helper.env, "unlock", stdin=CRYPTFILE_PASSPHRASE + "\n")
    assert_one_line(refused, "--accept-rollback", stream="stderr")
    accepted = credbridge(installation, helper.env, "unlock", "--accept-rollback", stdin=CRYPTFILE_PASSPHRASE + "\n")
    assert accepted.returncode == 0, accepted
    assert secret_of(helper.get(SERVER)) == SECRET
    assert helper("store", stdin=store_json("after.example")).returncode == 0
    assert json.loads(helper.list().stdout) == {SERVER: USERNAME, "after.example": USERNAME}


def test_a_file_made_anew_is_not_an_older_copy_but_the_removed_one_is(helper: Helper) -> None:
    """Moving a file away and logging in again is what credbridge advises for a damaged file."""
    path = cryptfile(helper.env)
    for server in ("one.example", "two.example", "three.example"):
        assert helper("store", stdin=store_json(server)).returncode == 0
    removed = path.read_bytes()
    path.unlink()
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    assert secret_of(helper.get(SERVER)) == SECRET
    path.write_bytes(removed)
    assert_one_line(helper.get("one.example"), str(path), "different", "credbridge unlock --accept-rollback")


def test_a_format_1_file_stays_readable_and_is_upgraded_by_the_next_write(
    installation: Installation, locked_env: dict[str, str]
) -> None:
    path = cryptfile(locked_env)
    plant(path, CRYPTFILE_PASSPHRASE, STRONG, {SERVER: {"Username": USERNAME, "Secret": SECRET}})
    old = path.read_bytes()
    assert credbridge(installation, locked_env, "unlock", stdin=CRYPTFILE_PASSPHRASE + "\n").returncode == 0
    helper = cryptfile_helper(installation, locked_env)
    assert secret_of(helper.get(SERVER)) == SECRET
    assert helper("store", stdin=store_json("new.example")).returncode == 0
    assert format_version(path) == 2
    assert json.loads(helper.list().stdout) == {SERVER: USERNAME, "new.example": USERNAME}
    path.write_bytes(old)
    assert_one_line(helper.get(SERVER), str(path), "credbridge unlock --accept-rollback")


# -- 13.13: loose passphrase files ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_passphrase_file_others_can_read_is_refused(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path, mode: int
) -> None:
    loose = passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE, mode)
    batch = cryptfile_helper(installation, {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(loose)})
    assert_one_line(batch("store", stdin=store_json(SERVER)), str(loose), "group or others", f"chmod 600 {loose}")
    assert not cryptfile(locked_env).exists()
    loose.chmod(0o600)
    assert batch("store", stdin=store_json(SERVER)).returncode == 0
    loose.chmod(mode)
    assert_one_line(batch.get(SERVER), f"chmod 600 {loose}")


def test_a_passphrase_file_of_another_user_is_refused(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path
) -> None:
    foreign = passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE)
    os.chown(foreign, 65534, 65534)
    batch = cryptfile_helper(installation, {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(foreign)})
    assert_one_line(batch("store", stdin=store_json(SERVER)), str(foreign), "not owned by you")
    assert not cryptfile(locked_env).exists()


def test_doctor_flags_a_loose_passphrase_file_and_vault_token(
    installation: Installation, cryptfile_session: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    token = home / ".vault-token"
    token.write_text("s.not-a-real-token\n")
    token.chmod(0o644)
    loose = passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE, 0o640)
    env = {
        **cryptfile_session,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "CREDBRIDGE_PASSPHRASE_FILE": str(loose),
        "CREDBRIDGE_NO_AGENT": "1",
    }
    report = credbridge(installation, env, "doctor")
    assert report.returncode == 1, report
    assert f"fix: chmod 600 {loose}" in report.text and f"fix: chmod 600 {token}" in report.text, report.text
    assert "s.not-a-real-token" not in report.text


# -- issue 14: a missing or locked file answers what it can ------------------------------------------


def test_a_missing_file_holds_nothing_and_needs_no_key(installation: Installation, locked_env: dict[str, str]) -> None:
    helper = cryptfile_helper(installation, locked_env)
    assert (helper.get(SERVER).returncode, helper.get(SERVER).stdout) == (1, NOT_FOUND)
    assert (helper.list().returncode, helper.list().stdout) == (0, b"{}\n")
    assert helper.erase(SERVER).returncode == 0
    assert helper("store", stdin=store_json(SERVER)).stdout == LOCKED
    assert not cryptfile(locked_env).parent.exists()


def test_a_locked_file_says_locked_only_for_a_registry_it_holds(installation: Installation, helper: Helper) -> None:
    """The same anchored canonical matching as unlocked: every spelling of a held registry is locked,
    every lookalike is not found."""
    for server, secret in STORED.items():
        assert helper("store", stdin=store_json(server, secret=secret)).returncode == 0
    assert credbridge(installation, helper.env, "lock").returncode == 0
    before = cryptfile(helper.env).read_bytes()
    for query in [*STORED, *SAME_REGISTRY]:
        result = helper.get(query)
        assert (result.returncode, result.stdout) == (1, LOCKED), query
    for query in [*DIFFERENT_REGISTRY, "unrelated.example", SERVER]:
        result = helper.get(query)
        assert (result.returncode, result.stdout) == (1, NOT_FOUND), query
    assert helper.list().stdout == LOCKED
    assert helper.erase("unrelated.example").returncode == 0
    assert helper.erase("registry.example.com").stdout == LOCKED
    assert cryptfile(helper.env).read_bytes() == before
    assert credbridge(installation, helper.env, "unlock", stdin=CRYPTFILE_PASSPHRASE + "\n").returncode == 0
    for query, secret in SAME_REGISTRY.items():
        assert secret_of(helper.get(query)) == secret, query


# -- issue 14: unlock from a pipe, and its options ----------------------------------------------------


def test_a_new_file_from_a_pipe_needs_new_and_a_long_passphrase(
    installation: Installation, locked_env: dict[str, str]
) -> None:
    path = cryptfile(locked_env)
    assert_one_line(credbridge(installation, locked_env, "unlock", stdin="x\n"), str(path), "--new", stream="stderr")
    assert_one_line(
        credbridge(installation, locked_env, "unlock", "--new", stdin="x\n"), "at least 8 characters", stream="stderr"
    )
    assert not path.exists()
    created = credbridge(installation, locked_env, "unlock", "--new", stdin=CRYPTFILE_PASSPHRASE + "\n")
    assert created.returncode == 0 and path.exists(), created
    assert_one_line(
        credbridge(installation, locked_env, "unlock", "--new", stdin=CRYPTFILE_PASSPHRASE + "\n"),
        str(path),
        "already exists",
        stream="stderr",
    )
    short = credbridge(installation, locked_env, "passwd", stdin=f"{CRYPTFILE_PASSPHRASE}\nshort\n")
    assert_one_line(short, "at least 8 characters", stream="stderr")


@pytest.mark.parametrize("command", ["unlock", "passwd"])
def test_a_timeout_that_is_not_a_number_is_named(
    installation: Installation, locked_env: dict[str, str], command: str
) -> None:
    for value in ("abc", "0", "-5", "nan", "inf"):
        result = credbridge(installation, locked_env, command, "--timeout", value)
        assert result.returncode == 2, result
        assert b"_positive_seconds" not in result.stderr and b"seconds" in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(b"credbridge " + command.encode()), result.stderr


# -- the memory of generations: where it is kept, and what it is keyed by ------------------------------

#: Run "$@" with HOME made read-only, in a private mount namespace (root ignores a mode, not a mount).
WITH_HOME_READ_ONLY = r'mount --bind "$HOME" "$HOME" && mount -o remount,bind,ro "$HOME" "$HOME" && exec "$@"'


def test_a_state_dir_that_cannot_be_written_warns_and_still_serves(
    installation: Installation, cryptfile_session: dict[str, str], tmp_path: Path
) -> None:
    """A cryptfile outside a read-only HOME: the newest generation cannot be remembered, the logins are still there."""
    env = {
        **cryptfile_session,
        "CREDBRIDGE_NO_AGENT": "1",
        "CREDBRIDGE_CRYPTFILE": str(tmp_path / "store" / "x.cbf"),
        "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE)),
    }
    assert cryptfile_helper(installation, env)("store", stdin=store_json(SERVER)).returncode == 0
    home = tmp_path / "read-only-home"
    home.mkdir(mode=0o700)
    read_only = {**env, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}

    def in_read_only_home(action: str, stdin: str) -> Result:
        argv = [
            "unshare",
            "-rm",
            "sh",
            "-c",
            WITH_HOME_READ_ONLY,
            "sh",
            installation.executable("docker-credential-cryptfile"),
            action,
        ]
        return run(argv, stdin, read_only)

    for result in (in_read_only_home("get", SERVER), in_read_only_home("store", store_json("more.example"))):
        assert result.returncode == 0, result
        assert result.stderr.count(b"\n") == 1 and b"warning" in result.stderr, result.stderr
        assert b"XDG_STATE_HOME" in result.stderr and str(home).encode() in result.stderr, result.stderr
    assert secret_of(in_read_only_home("get", SERVER)) == SECRET
    assert json.loads(in_read_only_home("list", "").stdout) == {SERVER: USERNAME, "more.example": USERNAME}
    assert not (home / ".local").exists()


@pytest.mark.parametrize("spelling", ["double-slash", "symlinked-parent"])
def test_another_spelling_of_the_path_does_not_bypass_the_older_copy_refusal(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path, spelling: str
) -> None:
    env = {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE))}
    path = cryptfile(env)
    batch = cryptfile_helper(installation, env)
    assert batch("store", stdin=store_json(SERVER)).returncode == 0
    older = path.read_bytes()
    assert batch.erase(SERVER).returncode == 0
    path.write_bytes(older)
    if spelling == "double-slash":
        other = "/" + str(path)
    else:
        (tmp_path / "link").symlink_to(tmp_path)
        other = str(tmp_path / "link" / path.relative_to(tmp_path))
    respelled = cryptfile_helper(installation, {**env, "CREDBRIDGE_CRYPTFILE": other})
    assert_one_line(respelled.get(SERVER), "older", "credbridge unlock --accept-rollback")
    assert_one_line(batch.get(SERVER), "older", "credbridge unlock --accept-rollback")


# -- secret files: only a regular file of this user's alone, and never a wait ---------------------------


def test_a_passphrase_fifo_is_refused_at_once(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path
) -> None:
    batch = {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file(tmp_path, CRYPTFILE_PASSPHRASE))}
    assert cryptfile_helper(installation, batch)("store", stdin=store_json(SERVER)).returncode == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    piped = cryptfile_helper(installation, {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(fifo)})
    assert_one_line(piped.get(SERVER), "CREDBRIDGE_PASSPHRASE_FILE", str(fifo), "not a regular file")


def vault_env(home: Path) -> dict[str, str]:
    """A Vault nobody listens at, logging in with ~/.vault-token: the token file is read before any request."""
    return {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "CREDBRIDGE_NO_AGENT": "1",
        "VAULT_ADDR": "http://127.0.0.1:9",
    }


@pytest.mark.parametrize("kind", ["fifo", "loose", "foreign"])
def test_a_vault_token_file_not_ours_alone_or_not_a_file_is_refused_at_once(
    installation: Installation, tmp_path: Path, kind: str
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    token = home / ".vault-token"
    if kind == "fifo":
        os.mkfifo(token, 0o600)
    else:
        token.write_text("s.not-a-real-token\n")
        token.chmod(0o644 if kind == "loose" else 0o600)
        if kind == "foreign":
            os.chown(token, 65534, 65534)
    vault = Helper(installation.executable("docker-credential-vault"), vault_env(home))
    expected = {"fifo": "not a regular file", "loose": f"chmod 600 {token}", "foreign": "not owned by you"}[kind]
    assert_one_line(vault("store", stdin=store_json(SERVER)), str(token), expected)


def vault_login_helper(
    installation: Installation, tmp_path: Path, method: str, field: str, mode: int
) -> tuple[Helper, Path]:
    """docker-credential-vault logging in by `method` with its secret in a file of `mode`, at a Vault nobody runs."""
    home = tmp_path / "home"
    (home / ".config" / "credbridge").mkdir(mode=0o700, parents=True)
    secret = tmp_path / "login-secret"
    secret.write_text("not-a-real-secret\n")
    secret.chmod(mode)
    other = {"approle": "role_id: r", "jwt": "role: r"}[method]
    (home / ".config" / "credbridge" / "config.yaml").write_text(
        f"vault:\n  auth:\n    method: {method}\n    {other}\n    {field}: {secret}\n"
    )
    return Helper(installation.executable("docker-credential-vault"), vault_env(home)), secret


def test_a_vault_approle_secret_file_others_can_read_is_refused(installation: Installation, tmp_path: Path) -> None:
    vault, secret = vault_login_helper(installation, tmp_path, "approle", "secret_id_file", 0o640)
    assert_one_line(vault("store", stdin=store_json(SERVER)), str(secret), f"chmod 600 {secret}")


def test_a_vault_jwt_file_others_can_write_is_refused(installation: Installation, tmp_path: Path) -> None:
    vault, secret = vault_login_helper(installation, tmp_path, "jwt", "jwt_file", 0o646)
    assert_one_line(vault("store", stdin=store_json(SERVER)), str(secret), f"chmod go-w {secret}")


def test_a_vault_jwt_file_the_platform_issues_readable_by_others_is_read(
    installation: Installation, tmp_path: Path
) -> None:
    """Kubernetes projects its service account token root-owned, 0644: that JWT is read (the tests run as root)."""
    vault, secret = vault_login_helper(installation, tmp_path, "jwt", "jwt_file", 0o644)
    answer = vault("store", stdin=store_json(SERVER))
    assert answer.returncode == 1 and str(secret) not in answer.text and "127.0.0.1" in answer.text, answer
