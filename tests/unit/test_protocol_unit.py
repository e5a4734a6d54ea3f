"""The protocol core in process: dispatch, input scanning, Go-compatible JSON.

The store here is a plain dict: these tests pin down the protocol's own
rules; every real store is tested through its executable elsewhere.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from credbridge.errors import CredentialsNotFound
from credbridge.gojson import decode_credentials, encode_credentials, encode_string, encode_string_map
from credbridge.protocol import serve
from credbridge.store import Credentials


class DictStore:
    def __init__(self) -> None:
        self.entries: dict[str, Credentials] = {}

    def store(self, credentials: Credentials) -> None:
        self.entries[credentials.server_url] = credentials

    def get(self, server_url: str) -> Credentials:
        if server_url not in self.entries:
            raise CredentialsNotFound()
        return self.entries[server_url]

    def erase(self, server_url: str) -> None:
        self.entries.pop(server_url, None)

    def list(self) -> dict[str, str]:
        return {url: c.username for url, c in self.entries.items()}


def call(args: list[str], stdin: bytes = b"", store: DictStore | None = None) -> tuple[bytes, int]:
    store = store if store is not None else DictStore()
    output, exit_code = serve("docker-credential-test", args, stdin, lambda: store)[0]
    return output, exit_code


def test_store_message_keys_match_case_insensitively_and_last_duplicate_wins() -> None:
    assert decode_credentials('{"serverurl":"a","USERNAME":"u","Secret":"x","secret":"y"}') == {
        "ServerURL": "a",
        "Username": "u",
        "Secret": "y",
    }


def test_null_leaves_a_field_as_it_was_like_go() -> None:
    assert decode_credentials('{"Username":"u","Username":null}')["Username"] == "u"


def test_only_the_first_json_value_is_read() -> None:
    assert decode_credentials('  {"ServerURL":"a"} {garbage')["ServerURL"] == "a"


def test_lone_surrogate_escapes_become_replacement_characters() -> None:
    assert decode_credentials('{"Secret":"a\\ud800b"}')["Secret"] == "a\ufffdb"


def test_type_errors_use_go_wording_and_name_the_struct_field() -> None:
    output, code = call(["store"], b'{"ServerURL":"a","Username":true}')
    assert (output, code) == (
        b"json: cannot unmarshal bool into Go struct field Credentials.Username of type string\n",
        1,
    )


def test_store_checks_server_url_before_username() -> None:
    assert call(["store"], b"{}") == (b"no credentials server URL\n", 1)
    assert call(["store"], b'{"ServerURL":"a"}') == (b"no credentials username\n", 1)


def test_get_joins_lines_drops_carriage_returns_and_trims() -> None:
    store = DictStore()
    store.store(Credentials("registry.example", "u", "s"))
    output, code = call(["get"], b"  regis\r\ntry.example \r\n", store)
    assert code == 0 and json.loads(output)["Secret"] == "s"


def test_get_answers_with_the_url_as_asked() -> None:
    store = DictStore()
    store.store(Credentials("a", "<token>", "t"))
    assert call(["get"], b"a\n", store) == (b'{"ServerURL":"a","Username":"\\u003ctoken\\u003e","Secret":"t"}\n', 0)


def test_a_line_of_64_kib_is_refused_as_go_scanner_does() -> None:
    assert call(["get"], b"x" * 65536) == (b"bufio.Scanner: token too long\n", 1)
    assert call(["get"], b"x" * 65535)[0] == b"credentials not found in native keychain\n"


def test_unexpected_store_failure_is_one_line_without_its_message() -> None:
    class Exploding(DictStore):
        def list(self) -> dict[str, str]:
            raise KeyError("s3cret-in-message")

    output, code = serve("h", ["list"], b"", lambda: Exploding())[0]
    assert code == 1 and output.count(b"\n") == 1 and b"s3cret" not in output and b"KeyError" in output


def test_list_encodes_a_sorted_go_map() -> None:
    assert encode_string_map({"b": "2", "a": "<1>"}) == b'{"a":"\\u003c1\\u003e","b":"2"}\n'


def test_control_characters_are_escaped_like_go_1_19() -> None:
    assert encode_string("\b\f\n\r\t\x00\x1f\x7f") == '"\\u0008\\u000c\\n\\r\\t\\u0000\\u001f\x7f"'


@given(st.text())
def test_encoded_strings_decode_back_and_are_html_safe(text: str) -> None:
    encoded = encode_string(text)
    assert not any(char in encoded for char in "<>&\u2028\u2029")
    expected = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    assert json.loads(encoded) == expected


@given(st.text(), st.text(), st.text())
def test_get_reply_is_compact_json_in_go_field_order(url: str, user: str, secret: str) -> None:
    line = encode_credentials(url, user, secret)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert list(json.loads(line)) == ["ServerURL", "Username", "Secret"]


@given(st.binary(max_size=300))
def test_any_input_to_any_action_gives_at_most_one_line_and_never_raises(data: bytes) -> None:
    for action in ("store", "get", "erase", "list"):
        output, code = call([action], data)
        assert code in (0, 1)
        assert output.count(b"\n") <= 1
