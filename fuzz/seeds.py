#!/usr/bin/env python3
"""Write the seed corpora of fuzz/corpus/<target>/ (fuzz/README.md).

Small, real inputs: commands from RFC 5321 and the unit tests, the hostile.md
cases, the spec's config example, a spool file as README.md shows it. Run it
again after changing a seed here; it only writes the files it names
(seed-*), so saved crash inputs (crash-*, leak-*, ...) stay as they are.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- command lines (fuzz_command): CRLF already taken off by io.c ----
COMMANDS = {
    "ehlo": "EHLO client.example",
    "helo-literal": "HELO [192.0.2.1]",
    "helo-v6": "EHLO [IPv6:2001:db8::1]",
    "helo-underscore": "HELO my_pc.",
    "mail": "MAIL FROM:<test@test.com>",
    "mail-null": "MAIL FROM:<> SIZE=1000 BODY=8BITMIME",
    "mail-space": "MAIL FROM: <a@b.example>",
    "mail-bare": "mail from:a@b.example size=10",
    "mail-size-huge": "MAIL FROM:<a@b.example> SIZE=99999999999999999999",
    "mail-params": "MAIL FROM:<a@b.example> ENVID=QQ+2BQ RET=HDRS AUTH=<>",
    "mail-repeated": "MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
    "mail-junk": "MAIL FROM:<a@b.example>SIZE=1",
    "rcpt": "RCPT TO:<user@other.com>",
    "rcpt-postmaster": "RCPT TO:<Postmaster>",
    "rcpt-route": "RCPT TO:<@a.example,@b.example:user@host.example>",
    "rcpt-quoted": 'RCPT TO:<"user@host"@local.example>',
    "rcpt-quoted-pair": 'RCPT TO:<"a\\"b>c"@local.example> NOTIFY=SUCCESS,FAILURE',
    "rcpt-percent": "RCPT TO:<user%host@local.example>",
    "rcpt-two-at": "RCPT TO:<user@host@local.example>",
    "rcpt-bang": "RCPT TO:<host!user@local.example>",
    "rcpt-literal": "RCPT TO:<a@[192.0.2.1]>",
    "rcpt-literal6": "RCPT TO:<a@[IPv6:::1]>",
    "rcpt-orcpt": "RCPT TO:<a@b.example> ORCPT=rfc822;a+40b.example",
    "rcpt-local64": "RCPT TO:<" + "l" * 64 + "@b.example>",
    "rcpt-local65": "RCPT TO:<" + "l" * 65 + "@b.example>",
    "rcpt-domain255": "RCPT TO:<a@" + ".".join(["d" * 63] * 4)[:255] + ">",
    "rcpt-label64": "RCPT TO:<a@" + "d" * 64 + ".example>",
    "exim-run": "MAIL FROM:<${run{/bin/sh -c id}}@y.example>",
    "opensmtpd": "MAIL FROM:<;sleep 66;>",
    "format": "MAIL FROM:<%s%n@y.example>",
    "nul-in-addr": "MAIL FROM:<a\0@b.example>",
    "nul-after-verb": "QUIT\0junk",
    "tab-verb": "MAIL\tFROM:<a@b.example>",
    "8bit": "RCPT TO:<a@b\xc3\xa9.example>",
    "bare-cr": "RCPT TO:<a@b.example>\rRSET",
    "auth-plain": "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    "starttls": "STARTTLS",
    "data": "DATA",
    "vrfy": "VRFY postmaster",
    "help": "HELP mail",
    "http": "GET / HTTP/1.0",
    "connect": "CONNECT mx.example:25 HTTP/1.1",
    "long-verb": "ABCDEFGHIJKLMNOPQRSTUVWXYZ x",
}

# ---- ESMTP parameters (fuzz_params): byte 0 is the xtext capacity ----
PARAMS = {
    "size-body": b"\x40SIZE=1000 BODY=8BITMIME",
    "size-max": b"\x40SIZE=18446744073709551615",
    "size-wrap": b"\x40SIZE=18446744073709551616",
    "size-empty": b"\x40SIZE= BODY=",
    "envid": b"\x40ENVID=abc+2Bdef RET=FULL",
    "orcpt": b"\x20ORCPT=rfc822;a+40b.example NOTIFY=NEVER",
    "xtext-crlf": b"\xffENVID=+0D+0A",
    "xtext-nul": b"\xffENVID=+00",
    "xtext-bad": b"\xffENVID=+GG ORCPT=+4 X=+7F",
    "xtext-lower": b"\xffENVID=+0a",
    "xtext-cap": b"\x03ENVID=abcdef",
    "repeated": b"\x40X=1 x=2",
    "no-value": b"\x40SMTPUTF8 BODY",
    "many": b"\x40" + b" ".join(b"K%d=%d" % (i, i) for i in range(17)),
}

# ---- SASL (fuzz_auth): byte 0 picks the capacity (0x80: room enough) ----
AUTH = {
    "plain": b"\x80AGFsaWNlAHNlY3JldA==",
    "plain-authzid": b"\x80Ym9iAGFsaWNlAHNlY3JldA==",
    "empty": b"\x80=",
    "cancel": b"\x80*",
    "login-user": b"\x80YWxpY2U=",
    "pad1": b"\x80Zm9vYg==",
    "pad2": b"\x80Zm9vYmE=",
    "nopad": b"\x80Zm9vYg",
    "bad-pad-bits": b"\x80Zm9vYh==",
    "mod4-3": b"\x80Zm9",
    "space": b"\x80Zm9v Zm9v",
    "cve-2018-6789": b"\x03Zm9vYmFy",
    "three-nul": b"\x80AHVzZXIAcGFzcwBleHRyYQ==",
    "one-nul": b"\x80dXNlcgBwYXNz",
}

# ---- the data filter (fuzz_data) ----
def data_seed(stream, max_size=0, max_hdr=0, fail=0, cuts=()):
    return (struct.pack(">HBBB", max_size, max_hdr, fail, len(cuts)) +
            b"".join(struct.pack(">H", c) for c in cuts) + stream)

SECOND = (b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\n"
          b"DATA\r\nFrom: ceo@example.com\r\n\r\nsmuggled\r\n")
MSG = (b"Received: from a by b; Sat, 28 Nov 2026 20:10:00 +0000\r\n"
       b"Subject: TESTING SMTP\r\n\t folded\r\nMessage-ID: <1@client.example>\r\n"
       b"\r\nbody line\r\n..stuffed\r\n.\r\n")
DATA = {
    "plain": data_seed(MSG),
    "split": data_seed(MSG, cuts=(1, 2, 30, 57, 58, 100, 130)),
    "limits": data_seed(MSG, max_size=40, max_hdr=2),
    "sink-fails": data_seed(MSG * 3, fail=1),
    "empty": data_seed(b".\r\n"),
    "header-only": data_seed(b"Subject: x\r\n.\r\n"),
    "stuffed": data_seed(b"..x\r\n...\r\n.\r\n"),
    "no-end": data_seed(b"Subject: x\r\n\r\nbody\r\n.\r"),
}
for i, fake in enumerate([b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\r\n.\n", b"\r\n.\r",
                          b"\r\n\0.\r\n", b"\r\n.\r\r\n", b"\r\n..\r\n"]):
    DATA["smuggle-%d" % i] = data_seed(b"Subject: s\r\n\r\nx" + fake + SECOND + b".\r\n",
                                       cuts=(5, 16, 17, 18, 19))
for n in (63, 64, 255, 256, 1023, 1024, 4095, 4096, 4097):
    DATA["edge-%d" % n] = data_seed(b"\r\n" + b"a" * n + b"\r\n.\r\n", cuts=(n, n + 1, n + 2))

# ---- config (fuzz_config) ----
def spec_config():
    text = open("/work/shared/spec/config.md", encoding="utf-8").read() \
        if os.path.exists("/work/shared/spec/config.md") else ""
    parts = text.split("```")
    return parts[1].lstrip("\n") if len(parts) > 2 else None

def embedded_default():
    src = open(os.path.join(ROOT, "src", "config_default.c"), encoding="utf-8").read()
    out = []
    for line in src.splitlines():
        line = line.strip()
        if line.startswith('"'):
            out.append(bytes(line.rstrip(";")[1:-1], "latin-1").decode("unicode_escape"))
    return "".join(out)

LISTENER = 'listeners = ( { name = "l"; listen = [ "127.0.0.1:25" ]; } );\n'
CONFIG = {
    "embedded-default": embedded_default(),
    "units": 'limits = { max_connection_time = "15m"; queue_max_bytes = "20G"; '
             'min_free_disk = 1073741824L; command_timeout = 300; };\n'
             'policy_defaults = { max_message_size = "512K"; greet_delay = 2; };\n' + LISTENER,
    "wide-int": "limits = { queue_max_messages = 3000000000; };\n",
    "hat-forms": 'listeners = ( { name = "l"; listen = [ "[::1]:25", "127.0.0.1:25" ];\n'
                 '  hat = ( { group = "G"; hosts = [ "192.0.2.10-20", "10.1.", "2001:db8::/32",\n'
                 '    "mail.example.com", ".example.org", "::ffff:1.2.3.4" ]; policy = "P"; } );\n'
                 '  rat = ( { recipient = "a@b.example"; action = "accept"; } ); } );\n'
                 'policies = { P = { action = "continue"; tls_required_senders = [ "x.example" ]; }; };\n',
    "routes": 'routes = ( { domain = "example.com"; to = [ "[10.1.1.5]:2525", "mx.example:25" ]; },\n'
              '  { domain = ".example.org"; to = [ "/dev/null" ]; },\n'
              '  { domain = "ALL"; to = [ "maildir:/tmp/m", "USEDNS" ]; } );\n'
              'delivery = { retry_initial = "1m"; retry_max = "1h"; };\n' + LISTENER,
    "retry-error": 'delivery = { retry_initial = "1h"; retry_max = "1m"; };\n' + LISTENER,
    "json-log": 'log = { file = "/var/log/mailgate.log"; format = "json"; };\n'
                'dns = { resolvers = [ "192.0.2.53", "[2001:db8::53]:5353" ]; timeout = "5s"; };\n'
                'tls = { certificate = "/c.pem"; key = "/k.pem"; };\n' + LISTENER,
    "errors": 'hostname = "bad host"; limits = { max_hops = -1; bogus = 1; };\n'
              'policies = { X = { action = "maybe"; banner_code = 999; }; };\n',
}
if spec_config():
    CONFIG["spec-example"] = spec_config()
    CONFIG["readme-example"] = spec_config().replace(
        '  { domain = "discard.example"; to = [ "/dev/null" ]; },\n', "")

# ---- spool files (fuzz_spool_read): README.md's example and variants ----
ENVELOPE = ("mailgate-spool 1\nmid 214\narrival 2026-11-28T20:10:00Z\nicid 5\n"
            "listener default\nclient 127.0.0.1\nhelo client.example\n"
            "sender <test@test.com>\nbody 8BITMIME\nrcpt 0 <user@other.com>\n")
MESSAGE = ("Received: from client.example ([127.0.0.1])\r\n\tby mx.example.com (mailgate) "
           "with ESMTP id 214 (ICID 5)\r\n\tfor <user@other.com>;\r\n\tSat, 28 Nov 2026 "
           "20:10:00 +0000\r\nsubject: TESTING SMTP\r\n\r\nhello\r\n")
SPOOL = {
    "readme": ENVELOPE + "\n" + MESSAGE,
    "null-sender": ENVELOPE.replace("<test@test.com>", "<>").replace("body 8BITMIME\n", "")
                   + "rcpt 1 <b@other.com>\nfuture-key x y\n\n",
    "empty-helo": ENVELOPE.replace("helo client.example", "helo ") + "\n",
    "bad-rid": ENVELOPE + "rcpt 2 <c@other.com>\n\n",
    "no-blank": ENVELOPE,
    "repeated": ENVELOPE + "mid 215\n\n",
    "bad-time": ENVELOPE.replace("20:10:00Z", "25:10:00Z") + "\n",
    "wrong-magic": "mailgate-spool 2\n" + ENVELOPE.split("\n", 1)[1] + "\n",
}

# ---- the spool round trip (fuzz_spool_roundtrip) ----
def rt_seed(mid, icid, arrival, rcpts, flags, listener, client, helo, sender, body, msg):
    def s(x):
        return bytes([len(x)]) + x
    return (struct.pack(">QQQBB", mid, icid, arrival, len(rcpts), flags) + s(listener) +
            s(client) + s(helo) + s(sender) + s(body) + b"".join(s(r) for r in rcpts) + msg)

ROUNDTRIP = {
    "readme": rt_seed(214, 5, 1795896600, [b"user@other.com"], 0, b"default", b"127.0.0.1",
                      b"client.example", b"test@test.com", b"8BITMIME", MESSAGE.encode()),
    "null-sender": rt_seed(1, 0, 0, [b"a@b", b"c@d", b"postmaster"], 1, b"", b"::1", b"",
                           b"", b"", b""),
    "max": rt_seed(2**64 - 1, 2**64 - 1, 253402300799, [b" <x> "], 0, b"l l", b"[::1]",
                   b"helo with spaces", b"<>", b"7BIT", b"\0\r\n.\r\n" * 10),
}

# ---- whole sessions (fuzz_session): byte 0 picks the client; 0xFF = wait ----
W = b"\xff"
def sess(peer, *chunks):
    return bytes([peer]) + W.join(chunks)

MAILTX = (b"MAIL FROM:<sender@client.example>\r\nRCPT TO:<user@example.com>\r\n")
BODY = b"Subject: hello\r\nMessage-ID: <x@y>\r\n\r\nline\r\n..dot\r\n.\r\n"
SESSION = {
    # peers: 0 127.0.0.1 relay+AUTH, 1 10.1.2.3 accept (RAT), 2 10.9.1.1 AUTH required,
    # 3 192.0.2.7 reject, 4 198.51.100.9 tcprefuse, 5 203.0.113.5 continue, then small
    # limits, 6 ::1 relay, 7 ::ffff:10.9.3.4 AUTH required
    "relay": sess(0, b"EHLO client.example\r\n", MAILTX + b"DATA\r\n", BODY + b"QUIT\r\n"),
    "accept-rat": sess(1, b"HELO c.example\r\n", b"MAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\n"
                       b"RCPT TO:<b@sub.example.com>\r\nRCPT TO:<c@other.example>\r\n"
                       b"RCPT TO:<postmaster>\r\nDATA\r\n", BODY, b"RSET\r\nQUIT\r\n"),
    "pipelined": sess(0, b"EHLO a\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n"
                      b"RCPT TO:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n", BODY
                      + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n",
                      BODY + b"QUIT\r\n"),
    "early-talker": sess(0, b"EHLO a\r\n" + MAILTX + b"DATA\r\n" + BODY),
    "auth-plain": sess(2, b"EHLO a\r\n", b"MAIL FROM:<a@b.example>\r\n",
                       b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", MAILTX + b"DATA\r\n", BODY),
    "auth-plain-334": sess(0, b"EHLO a\r\nAUTH PLAIN\r\n", b"AGFsaWNlAHdyb25n\r\n",
                           b"AUTH PLAIN =\r\n", b"*\r\n", b"AUTH PLAIN\r\n",
                           b"AGFsaWNlAHNlY3JldA==\r\n", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    "auth-login": sess(0, b"EHLO a\r\nAUTH LOGIN\r\n", b"YWxpY2U=\r\n", b"c2VjcmV0\r\n",
                       b"MAIL FROM:<a@b.example>\r\n"),
    "auth-bad": sess(2, b"EHLO a\r\nAUTH CRAM-MD5\r\nAUTH PLAIN Zm9v\r\nAUTH PLAIN A===\r\n"
                     b"AUTH LOGIN Zm9v\r\n", b"*\r\n", b"AUTH PLAIN AHVzZXIAcGFzcwBleHRyYQ==\r\n",
                     b"AUTH PLAIN AGJvYgB4\r\n", b"AUTH PLAIN AGJvYgB4\r\n"),
    "smuggling": sess(0, b"EHLO a\r\n" + MAILTX + b"DATA\r\n",
                      b"Subject: s\r\n\r\nx\n.\n" + SECOND + b".\r\n" + b"QUIT\r\n"),
    "smuggling-reject": sess(1, b"EHLO a\r\n" + MAILTX + b"DATA\r\n",
                             b"Subject: s\r\n\r\nx\r\n.\r\r\n" + SECOND + b".\r\n", b"QUIT\r\n"),
    "bad-commands": sess(1, b"EHLO\r\nHELO\r\nFOO\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n"
                         b"DATA x\r\nRSET x\r\nQUIT x\r\nMAIL\tFROM:<a@b.example>\r\n"
                         b"QUIT\0junk\r\nSTARTTLS\r\nVRFY\r\nHELP DATA\r\nHELP x\r\nNOOP\r\n"),
    "long-line": sess(0, b"EHLO a\r\n", b"MAIL FROM:<" + b"a" * 600 + b"@b>\r\n", b"NOOP " +
                      b"x" * 2000 + b"\r\nNOOP\r\n"),
    "limits": sess(5, b"EHLO a\r\n" + b"".join(b"MAIL FROM:<a@b.example> SIZE=%d\r\nRSET\r\n"
                                               % n for n in (299, 301, 99999999999999999999)),
                   b"RSET\r\nMAIL FROM:<a@b.example>\r\n" +
                   b"".join(b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(10)) +
                   b"DATA\r\n", b"Subject: big\r\n\r\n" + b"x" * 300 + b"\r\n.\r\n"),
    "headers": sess(0, b"EHLO a\r\n" + MAILTX + b"DATA\r\n",
                    b"".join(b"Received: hop %d\r\n" % i for i in range(8)) +
                    b"".join(b"X-H%d: v\r\n" % i for i in range(50)) + b"\r\n.\r\n"),
    "bare-lf": sess(1, b"EHLO a\r\n" + MAILTX + b"DATA\r\n", b"Subject: x\n\nbare\n.\r\n"),
    "reject": sess(3, b"EHLO a\r\n"),
    "tcprefuse": sess(4, b"EHLO a\r\n"),
    "v6": sess(6, b"EHLO [IPv6:::1]\r\nMAIL FROM:<a@[IPv6:::1]>\r\n"
               b"RCPT TO:<\"a b\"@example.com>\r\nDATA\r\n", b".\r\n"),
    "mapped": sess(7, b"HELO [10.9.3.4]\r\nMAIL FROM:<a@b.example>\r\n"),
    "non-smtp": sess(1, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
    "max-messages": sess(0, b"EHLO a\r\n", *[MAILTX + b"DATA\r\n", b".\r\n"] * 5),
}

# ---- server replies (fuzz_client_reply): byte 0 seeds the splits (0: bytes) ----
EHLO_REPLY = ("250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n"
              "250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
              "250-CHUNKING\r\n250 DSN\r\n")
CLIENT_REPLY = {
    "banner": "\x07220 mx.example.com ESMTP\r\n",
    "ehlo": "\x00" + EHLO_REPLY,
    "pipelined": "\x11250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n",
    "bare-code": "\x03250\r\n221\n",
    "bare-lf": "\x05250-a\n250 b\n",
    "mixed-codes": "\x01250-a\r\n251 b\r\n",
    "not-a-reply": "\x02HTTP/1.1 400 Bad Request\r\n",
    "overlong": "\x09250 " + "x" * 2100 + "\r\n",
    "many-lines": "\x0d" + "250-x\r\n" * 101 + "250 y\r\n",
    "enhanced": "\x04451 4.3.0 try later\r\n",
}


def main():
    for name, data in COMMANDS.items():
        write("command", name, data)
    for name, data in PARAMS.items():
        write("params", name, data)
    for name, data in AUTH.items():
        write("auth", name, data)
    for name, data in DATA.items():
        write("data", name, data)
    for name, data in CONFIG.items():
        write("config", name, data)
    for name, data in SPOOL.items():
        write("spool_read", name, data)
    for name, data in ROUNDTRIP.items():
        write("spool_roundtrip", name, data)
    for name, data in SESSION.items():
        write("session", name, data)
    for name, data in CLIENT_REPLY.items():
        write("client_reply", name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
