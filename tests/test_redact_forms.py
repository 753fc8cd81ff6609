"""Secrets in the shapes real tools print: one test per shape, then end to end.

Each test asserts that the secret's value is gone and that what is not secret (names,
structure, neighbouring values) is still there, so that redaction cannot pass by eating
the whole output. The end-to-end tests run real local processes through the simulator
(``cat`` of a file, ``grep --color``, ``ps``, ``/proc``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess

import pytest

import koyeb_analytics as ka
from koyeb_analytics.redact import (
    _STEMS,
    REDACTED,
    SECRET_WORDS,
    LineRedactor,
    Redactor,
    is_secret_name,
)

from .conftest import fast_client

SEAM = "KoyebCut" + "0123456789abcdef" * 2
"""What the run puts where ``max_output`` dropped the middle of an output."""


def redact(text: str) -> str:
    out, n = Redactor().redact(text)
    assert (n > 0) == (out != text), (n, out)
    return out


def gone(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, (secret, text)


def kept(text: str, *parts: str) -> None:
    for part in parts:
        assert part in text, (part, text)


def key_body(n: int, seed: str = "k") -> list[str]:
    """``n`` distinct 64-character base64 lines, the body of a fake private key."""
    lines, h = [], seed.encode()
    for _ in range(n):
        h = hashlib.sha512(h).digest()
        lines.append(base64.b64encode(h).decode()[:64])
    return lines


def pem(body: list[str], kind: str = "RSA ") -> str:
    return (f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(body)
            + f"\n-----END {kind}PRIVATE KEY-----\n")


# -- credentials inside JSON ----------------------------------------------------------

STS = """{
    "Credentials": {
        "AccessKeyId": "ASIAQXAMPLE7EXAMPLEZ",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
        "SessionToken": "FwoGZXIvYXdzEJr//////////wEaDM1+secret+session+token==",
        "Expiration": "2026-11-20T13:00:00+00:00"
    },
    "AssumedRoleUser": {
        "AssumedRoleId": "AROA3XFRBF535PLBIFPI4:s3-access-example",
        "Arn": "arn:aws:sts::123456789012:assumed-role/demo/s3-access-example"
    }
}
"""


def test_json_secret_access_key():
    out = redact(STS)
    gone(out, "wJalrXUtnFEMI", "EXAMPLEKEY")
    doc = json.loads(out)  # still JSON, every key where it was
    assert doc["Credentials"]["SecretAccessKey"] == REDACTED
    assert doc["Credentials"]["Expiration"] == "2026-11-20T13:00:00+00:00"
    assert doc["AssumedRoleUser"] == json.loads(STS)["AssumedRoleUser"]


def test_json_session_token():
    raw = ('{"SessionToken":"FwoGZXIvYXdzEJr//////////wEaDM1+tok==","DurationSeconds":3600,'
           '"Region":"fra"}')
    out = redact(raw)
    gone(out, "FwoGZXIvYXdz", "tok==")
    assert json.loads(out) == {"SessionToken": REDACTED, "DurationSeconds": 3600,
                               "Region": "fra"}


def test_json_access_token():
    raw = ('{"access_token":"ya29.a0AfH6SMBx3-not-real","expires_in":3599,'
           '"scope":"openid email","refresh_token":"1//0gLx-not-real-either"}')
    out = redact(raw)
    gone(out, "ya29.a0AfH6SMBx3", "1//0gLx")
    doc = json.loads(out)
    assert doc["scope"] == "openid email" and doc["expires_in"] == 3599
    assert doc["access_token"] == doc["refresh_token"] == REDACTED


def test_json_password_with_escapes():
    raw = '{\n  "username": "app",\n  "password": "p@ss\\"w\\\\0rd-x9",\n  "port": 5432\n}\n'
    out = redact(raw)
    gone(out, "p@ss", "0rd-x9")
    assert json.loads(out) == {"username": "app", "password": REDACTED, "port": 5432}


def test_json_number_under_a_secret_name_becomes_a_string():
    raw = '{"vault_pin_password": 482913, "port": 5432, "api_key": null, "token": {"ttl": 60}}'
    out = redact(raw)
    gone(out, "482913")
    assert json.loads(out) == {"vault_pin_password": REDACTED, "port": 5432, "api_key": None,
                               "token": {"ttl": 60}}


def test_json_any_secret_named_key():
    raw = json.dumps({"stripeApiKey": "sk_live_51Habc", "client_secret": "cs-9f8e7d",
                      "webhookSigningSecret": "whsec_123xyz", "privateKey": "pk-abc-123",
                      "keyboardLayout": "us", "monkeyPatch": "on", "tokenizer": "bpe"})
    out = redact(raw)
    gone(out, "sk_live_51Habc", "cs-9f8e7d", "whsec_123xyz", "pk-abc-123")
    doc = json.loads(out)
    assert (doc["keyboardLayout"], doc["monkeyPatch"], doc["tokenizer"]) == ("us", "on", "bpe")


def test_json_escaped_inside_a_log_line():
    raw = '{"level":"info","msg":"{\\"user\\":\\"bob\\",\\"password\\":\\"hunter2\\"}"}\n'
    out = redact(raw)
    gone(out, "hunter2")
    assert json.loads(json.loads(out)["msg"]) == {"user": "bob", "password": REDACTED}


def test_python_dict_repr():
    out = redact("settings: {'db_password': 'hunter2', 'host': 'db', 'api_key': \"it's\"}")
    gone(out, "hunter2", "it's")
    kept(out, "'host': 'db'", "'db_password': '[redacted]'")


# -- AWS access key ids ---------------------------------------------------------------

def test_aws_access_key_id_akia():
    out = redact("aws_access_key_id AKIAIOSFODNN7EXAMPLE in profile default\n")
    assert out == "aws_access_key_id [redacted] in profile default\n"


def test_aws_access_key_id_asia():
    out = redact("using ASIAY34FZKBOKMUTVV7A for the session (role demo)")
    assert out == "using [redacted] for the session (role demo)"


def test_aws_access_key_id_look_alikes_stay():
    for raw in ("AKIAIOSFODNN7EXAMPL is too short", "AKIAIOSFODNN7EXAMPLEXX is too long",
                "AKIAiosfodnn7example is lower case"):
        assert Redactor().redact(raw) == (raw, 0)


# -- JSON Web Tokens ------------------------------------------------------------------

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4i"
       "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")


def test_jwt_bare_on_a_line():
    out = redact(f"session for bob\n{JWT}\nexpires in 3600 s\n")
    assert out == "session for bob\n[redacted]\nexpires in 3600 s\n"


def test_jwt_inside_json():
    raw = json.dumps({"user": "bob", "jwt": JWT, "roles": ["admin"]})
    out = redact(raw)
    gone(out, "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", "eyJzdWIi")
    assert json.loads(out) == {"user": "bob", "jwt": REDACTED, "roles": ["admin"]}


def test_base64_without_dots_is_not_a_jwt():
    raw = "eyJ1c2VyIjoiYm9iIn0= is just base64 json"
    assert Redactor().redact(raw) == (raw, 0)


# -- tokens in URLs -------------------------------------------------------------------

def test_url_token_as_user():
    raw = ("origin\thttps://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/acme/app.git"
           " (fetch)\n")
    out = redact(raw)
    assert out == "origin\thttps://[redacted]@github.com/acme/app.git (fetch)\n"


def test_url_sentry_dsn_key_as_user():
    out = redact("sentry: https://9f8e7d6c5b4a39281706f5e4d3c2b1a0@o1.ingest.sentry.io/42")
    assert out == "sentry: https://[redacted]@o1.ingest.sentry.io/42"


def test_url_user_and_password():
    assert redact("amqp://guest:s3cr3t@rabbit:5672/") == "amqp://guest:[redacted]@rabbit:5672/"
    assert redact("https://x-access-token:ghs_abc123def@github.com/a/b") == \
        "https://x-access-token:[redacted]@github.com/a/b"


def test_url_plain_user_stays():
    for raw in ("ssh://git@github.com/acme/app.git", "postgres://postgres@db:5432/app",
                "see https://example.com/users/@me and mailto:bob@example.com"):
        assert Redactor().redact(raw) == (raw, 0)


# -- environment dumps ----------------------------------------------------------------

def test_declare_x():
    raw = ('declare -x HOME="/root"\ndeclare -x DB_PASSWORD="hunter2 with spaces"\n'
           'declare -rx GITHUB_TOKEN="ghp_abc"\ndeclare -x LANG="C.UTF-8"\n')
    out = redact(raw)
    gone(out, "hunter2", "ghp_abc")
    assert out.splitlines() == ['declare -x HOME="/root"', "declare -x DB_PASSWORD=[redacted]",
                                "declare -rx GITHUB_TOKEN=[redacted]",
                                'declare -x LANG="C.UTF-8"']


def test_export():
    out = redact("export PATH=/usr/bin\nexport STRIPE_SECRET_KEY=sk_test_123\n")
    assert out == "export PATH=/usr/bin\nexport STRIPE_SECRET_KEY=[redacted]\n"


def test_docker_inspect_env_array():
    raw = json.dumps([{"Config": {"Env": ["PATH=/usr/local/bin:/usr/bin",
                                          "DB_PASSWORD=hunter2",
                                          'API_TOKEN=tok "quoted" part',
                                          "LANG=C.UTF-8"],
                                  "Image": "acme/app:1"}}], indent=4)
    out = redact(raw)
    gone(out, "hunter2", "quoted")
    env = json.loads(out)[0]["Config"]["Env"]
    assert env == ["PATH=/usr/local/bin:/usr/bin", "DB_PASSWORD=[redacted]",
                   "API_TOKEN=[redacted]", "LANG=C.UTF-8"]


def test_proc_environ_nul_separated():
    raw = "PATH=/usr/bin\0DB_PASSWORD=hunter2 two\0HOME=/root\0API_KEY=k-123\0"
    out = redact(raw)
    gone(out, "hunter2", "k-123")
    assert out.split("\0") == ["PATH=/usr/bin", "DB_PASSWORD=[redacted]", "HOME=/root",
                               "API_KEY=[redacted]", ""]


# -- command-line flags as ps shows them ----------------------------------------------

PS = ("USER   PID %CPU COMMAND\n"
      "app     12  0.1 /usr/bin/app --db-password=s3cr3t-pw --port 8080 --verbose\n"
      "app     13  0.0 /usr/bin/worker --token tok-s3cr3t --queue jobs -v\n")


def test_flag_equals_as_ps_shows():
    out = redact(PS)
    gone(out, "s3cr3t-pw")
    kept(out, "/usr/bin/app --db-password=[redacted] --port 8080 --verbose")


def test_flag_space_as_ps_shows():
    out = redact(PS)
    gone(out, "tok-s3cr3t")
    kept(out, "/usr/bin/worker --token [redacted] --queue jobs -v")


def test_flag_in_proc_cmdline_nul_separated():
    out = redact("/usr/bin/worker\0--api-key\0k-s3cr3t\0--queue\0jobs\0")
    assert out == "/usr/bin/worker\0--api-key\0[redacted]\0--queue\0jobs\0"


def test_java_system_property():
    out = redact("java -Djavax.net.ssl.keyStorePassword=changeit -Xmx1g -jar app.jar")
    assert out == "java -Djavax.net.ssl.keyStorePassword=[redacted] -Xmx1g -jar app.jar"


# -- colour codes (grep --color=always) -----------------------------------------------

def test_grep_colour_around_the_name():
    raw = "\x1b[01;31m\x1b[KPASSWORD\x1b[m\x1b[K=secret\nOTHER=1\n"
    out = redact(raw)
    gone(out, "secret")
    assert out == "PASSWORD=[redacted]\nOTHER=1\n"


def test_grep_colour_around_the_value_and_the_file_name():
    raw = ("\x1b[35m\x1b[K.env\x1b[m\x1b[K\x1b[36m\x1b[K:\x1b[m\x1b[KAPI_TOKEN=\x1b[01;31m"
           "\x1b[Ktok_live\x1b[m\x1b[K_9a8b7c\n")
    out = redact(raw)
    gone(out, "tok_live", "9a8b7c")
    kept(out, ".env:API_TOKEN=[redacted]")


def test_colours_stay_when_nothing_is_redacted():
    raw = "\x1b[01;31m\x1b[KKEYBOARD_LAYOUT\x1b[m\x1b[K=us\n"
    assert Redactor().redact(raw) == (raw, 0)


# -- private keys cut by the end of the text or by max_output's dropped middle ---------

BODY = key_body(8)


def test_key_without_end_is_redacted_to_the_end_of_the_text():
    out, n = Redactor().redact("before\n" + pem(BODY)[:300])
    gone(out, *(line[:16] for line in BODY))
    assert (out, n) == ("before\n[redacted]", 1)


def test_key_without_end_is_redacted_to_the_drop_seam():
    raw = "before\n" + pem(BODY)[:250] + SEAM + "after the cut\nmore\n"
    out = redact(raw)
    gone(out, *(line[:16] for line in BODY))
    assert out == "before\n[redacted]" + SEAM + "after the cut\nmore\n"


def test_key_without_begin_is_redacted_from_the_start_of_the_text():
    out = redact(pem(BODY)[200:] + "after\n")
    gone(out, *(line[:16] for line in BODY[3:]))
    assert out == "[redacted]\nafter\n"


def test_key_without_begin_is_redacted_from_the_drop_seam():
    raw = "head line\n" + SEAM + pem(BODY)[300:] + "after\n"
    out = redact(raw)
    gone(out, *(line[:16] for line in BODY[4:]))
    assert out == "head line\n" + SEAM + "[redacted]\nafter\n"


def test_key_across_the_drop_seam_is_redacted_on_both_sides():
    whole = pem(BODY)
    raw = "head\n" + whole[:250] + SEAM + whole[400:] + "tail\n"
    out = redact(raw)
    gone(out, *(line[:16] for line in BODY))
    assert out == "head\n[redacted]" + SEAM + "[redacted]\ntail\n"


def test_line_redactor_follows_a_key_across_calls():
    lines = LineRedactor(Redactor())
    text = ("start\n" + pem(BODY, "EC ") + "between\n"
            + "x -----BEGIN PRIVATE KEY----- " + BODY[0] + "\n" + BODY[1] + "\n"
            + "-----END PRIVATE KEY----- after\nend\n")
    shown = "".join(lines.line(t) for t in text.splitlines(keepends=True))
    gone(shown, *(line[:16] for line in BODY))
    assert shown == "start\n[redacted]\nbetween\nx [redacted]\n after\nend\n"
    assert lines.count == 2 and not lines.in_key


def test_line_redactor_key_without_end_hides_every_later_line():
    lines = LineRedactor(Redactor())
    shown = [lines.line(t) for t in ("a\n", "-----BEGIN RSA PRIVATE KEY-----\n",
                                     BODY[0] + "\n", BODY[1] + "\n")]
    assert shown == ["a\n", "[redacted]\n", "", ""] and lines.in_key


def test_line_redactor_end_without_begin():
    lines = LineRedactor(Redactor())
    assert lines.line("-----END RSA PRIVATE KEY-----\n") == "[redacted]\n"
    assert lines.line("after\n") == "after\n" and lines.count == 1


# -- other shapes of names meeting values --------------------------------------------

def test_query_string_token():
    out = redact('10.0.0.1 - - "GET /cb?code=abc&access_token=xyz123&state=9 HTTP/1.1" 200')
    assert out == '10.0.0.1 - - "GET /cb?code=abc&access_token=[redacted]&state=9 HTTP/1.1" 200'


def test_logfmt_value():
    out = redact('time=12:00 level=warn msg="login failed" password=hunter2 user=bob\n')
    assert out == 'time=12:00 level=warn msg="login failed" password=[redacted] user=bob\n'


def test_connection_string():
    out = redact("Server=db;Database=app;User Id=app;Password=p4ss;Encrypt=true")
    assert out == "Server=db;Database=app;User Id=app;Password=[redacted];Encrypt=true"


def test_authorization_header_any_scheme():
    out = redact("> GET / HTTP/1.1\n> Authorization: Basic dXNlcjpwYXNzd29yZA==\n> Accept: */*\n")
    assert out == "> GET / HTTP/1.1\n> Authorization: Basic [redacted]\n> Accept: */*\n"


def test_every_secret_word_holds_a_stem():
    # Name-led rules only look at lines holding a stem: a word without one would
    # never be found.
    for word in SECRET_WORDS:
        assert any(stem.decode() in word.lower() for stem in _STEMS), word


def test_secret_names_in_camel_case():
    assert all(map(is_secret_name, ["SecretAccessKey", "SessionToken", "apiKey",
                                    "keyStorePassword", "clientSecret", "APIKey"]))
    assert not any(map(is_secret_name, ["Keyboard", "monkeyPatch", "tokenizer",
                                        "passthrough", "Expiration", "Turkey"]))


def test_a_token_alone_is_redacted():
    # Output that is nothing but the token (cat token.txt) has none of = : - to hint.
    for raw in ("AKIAIOSFODNN7EXAMPLE\n", JWT, "BEARER ABCDEFGH12345678", "Bearer abcdefgh1234"):
        assert Redactor().redact(raw)[1] == 1 and raw.split()[-1] not in redact(raw), raw


def test_plain_text_is_returned_unchanged():
    raw = "health check passed in 3 ms\nkeys rotated: 0\ntokenizer=bpe\n"
    assert Redactor().redact(raw) == (raw, 0)
    assert Redactor().redact_bytes(b"x" * 100_000) == (b"x" * 100_000, 0)


# -- end to end: real processes through the simulator ---------------------------------

@pytest.fixture
def client(exec_sim):
    exec_sim.exec_faults = ka.simulator.ExecFaults()
    c = fast_client(exec_sim)
    yield c
    c.close()


@pytest.fixture(scope="module")
def iids(exec_sim):
    inst = ka.load_instances(fast_client(exec_sim), statuses=["HEALTHY"], progress=False)
    return list(inst["id"][:2])


def test_e2e_sts_json_through_exec_command(client, iids, tmp_path):
    path = tmp_path / "sts.json"
    path.write_text(STS)
    res = ka.exec_command(client, ["cat", str(path)], instance_id=iids[0])
    assert res.ok and res.redacted >= 2
    gone(res.stdout_text, "wJalrXUtnFEMI", "FwoGZXIvYXdz")
    assert json.loads(res.stdout_text)["AssumedRoleUser"] == json.loads(STS)["AssumedRoleUser"]


def test_e2e_proc_environ_through_exec_command(client, iids):
    # The simulator gives every process fake secrets in its environment.
    res = ka.exec_command(client, ["cat", "/proc/self/environ"], instance_id=iids[0])
    entries = res.stdout_text.split("\0")
    gone(res.stdout_text, "tok_fake_", "sk_test_fake", "-fake@db")
    assert "API_TOKEN=[redacted]" in entries and "KEYBOARD_LAYOUT=us" in entries
    assert "STRIPE_SECRET_KEY=[redacted]" in entries and res.redacted >= 3


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps")
def test_e2e_flags_in_ps_and_cmdline_through_exec_many(client, iids):
    script = ("sh -c 'sleep 3' app-worker --db-password=pw-s3cr3t --token tok-s3cr3t "
              "--queue jobs & sleep 0.3; ps -eo args | grep '[a]pp-worker'; "
              "cat /proc/$!/cmdline; kill $!")
    runs = ka.exec_many(client, script, instances=iids, timeout=30)
    for out in runs["stdout"]:
        gone(out, "pw-s3cr3t", "tok-s3cr3t")
        kept(out, "app-worker --db-password=[redacted] --token [redacted] --queue jobs",
             "app-worker\0--db-password=[redacted]\0--token\0[redacted]\0--queue\0jobs")
    assert (runs["redacted"] >= 4).all()


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps")
def test_e2e_flags_in_ps_aux_through_exec_table(client, iids):
    # The simulator's instances are processes of this machine: ps aux sees this one.
    worker = f"table-worker-{os.getpid()}"
    proc = subprocess.Popen(["sh", "-c", "sleep 20", worker, "--db-password=pw-s3cr3t",
                             "--token", "tok-s3cr3t", "--queue", "jobs"])
    try:
        df = ka.exec_table(client, "processes", instances=iids, timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert not df.attrs["failed"], df.attrs["failed"]
    text = df.to_csv()
    gone(text, "pw-s3cr3t", "tok-s3cr3t")
    mine = df[df["command"].str.contains(worker, regex=False)]
    assert len(mine) == len(iids)
    assert (mine["command"] == f"sh -c sleep 20 {worker} --db-password=[redacted] "
                               "--token [redacted] --queue jobs").all()


def test_e2e_grep_colour_through_exec_command(client, iids, tmp_path):
    path = tmp_path / "app.env"
    path.write_text("LOG_LEVEL=info\nPASSWORD=hunter2-s3cr3t\nREGION=fra\n")
    res = ka.exec_command(client, ["grep", "--color=always", "-e", "PASSWORD", "-e", "REGION",
                                   str(path)], instance_id=iids[0])
    assert "\x1b[" in ka.exec_command(client, ["grep", "--color=always", "REGION", str(path)],
                                      instance_id=iids[0]).stdout_text
    gone(res.stdout_text, "hunter2-s3cr3t")
    kept(res.stdout_text, "PASSWORD=[redacted]", "REGION=fra")


def test_e2e_docker_env_jwt_and_url_token_through_exec_many(client, iids, tmp_path):
    path = tmp_path / "inspect.txt"
    path.write_text(json.dumps([{"Config": {"Env": ["DB_PASSWORD=hunter2", "LANG=C"]},
                                 "Labels": {"session": JWT}}], indent=2)
                    + "\norigin https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com"
                      "/acme/app.git (fetch)\n")
    runs = ka.exec_many(client, ["cat", str(path)], instances=iids, timeout=30)
    for out in runs["stdout"]:
        gone(out, "hunter2", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV", "ghp_16C7e42F292c")
        kept(out, "origin https://[redacted]@github.com/acme/app.git (fetch)")
        doc = json.loads(out[:out.index("\norigin")])
        assert doc[0]["Config"]["Env"] == ["DB_PASSWORD=[redacted]", "LANG=C"]
        assert doc[0]["Labels"]["session"] == REDACTED
    assert runs["redacted"].tolist() == [3, 3]


def cut_file(tmp_path, before: int, after: int):
    body = key_body(30, f"{before}-{after}")
    pre = "".join(f"before {i:04d}\n" for i in range(before))
    post = "".join(f"after {i:04d}\n" for i in range(after))
    path = tmp_path / "out.txt"
    path.write_text(pre + pem(body) + post)
    return path, body


def test_e2e_key_whose_end_max_output_dropped(client, iids, tmp_path):
    # head: 100 "before" lines, the key's BEGIN and first lines; its END is in the middle
    path, body = cut_file(tmp_path, before=100, after=400)
    res = ka.exec_command(client, ["cat", str(path)], instance_id=iids[0], max_output=3000)
    assert res.stdout_dropped > 0
    gone(res.stdout_text, *(line[:16] for line in body))
    kept(res.stdout_text, "before 0000\n", "before 0099\n", "after 0399\n")


def test_e2e_key_whose_begin_max_output_dropped(client, iids, tmp_path):
    # tail: the key's last lines and END, then 100 "after" lines; its BEGIN is dropped
    path, body = cut_file(tmp_path, before=400, after=100)
    res = ka.exec_command(client, ["cat", str(path)], instance_id=iids[0], max_output=3000)
    assert res.stdout_dropped > 0
    gone(res.stdout_text, *(line[:16] for line in body))
    kept(res.stdout_text, "before 0000\n", "after 0000\n", "after 0099\n")


def test_e2e_widget_key_across_frames_and_colour(client, iids):
    body = key_body(4, "widget")
    script = ("printf '%s\\n' start '-----BEGIN OPENSSH PRIVATE KEY-----' " + body[0]
              + "; sleep 0.3; printf '%s\\n' " + " ".join(body[1:])
              + "; sleep 0.3; printf '%s\\n' '-----END OPENSSH PRIVATE KEY-----' done; "
              "printf '\\033[01;31m\\033[KDB_PASSWORD\\033[m\\033[K=pw-s3cr3t\\n'")
    w = ka.ExecWidget(client, instances=ka.load_instances(client, progress=False))
    w.run(script, instances=[iids[0]])
    shown = "".join(o.get("text", "") for o in w._cells.children[0].children[1].outputs)
    gone(shown, "pw-s3cr3t", *(line[:16] for line in body))
    kept(shown, "start\n[redacted]\ndone\n", "DB_PASSWORD=[redacted]", "value(s) redacted]")
    row = w.transcript.iloc[0]
    gone(row["stdout"], "pw-s3cr3t", *(line[:16] for line in body))
    assert row["stdout"].startswith("start\n[redacted]\ndone\n") and row["redacted"] == 2
