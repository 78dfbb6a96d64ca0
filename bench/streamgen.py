"""Deterministic generator of realistic server-to-client XMPP traffic.

Everything is derived from a seeded :class:`random.Random`; nothing reads the clock, so
the same ``(n, seed)`` always yields byte-identical output. The inbound stream models
what a busy client sees after session establishment:

* ~60 % ``<message type='chat'>`` with a body (some non-ASCII, some with characters that
  need escaping) and the usual extension children: XEP-0085 chat state, XEP-0359
  ``origin-id``/``stanza-id``, sometimes a XEP-0184 receipt request and sometimes a
  XEP-0203 ``delay``;
* ~25 % ``<presence>`` with XEP-0115 caps, ``show``, ``status`` and ``priority`` (a few
  ``unavailable``);
* ~8 % ``<iq type='result'>`` carrying a disco#info answer (identities and ~10 features);
* ~7 % XEP-0198 nonzas (``<r/>`` and ``<a h='0'/>``).

Senders come from a fixed pool of full JIDs (200 by default) so that JID caches in the
libraries under test see a realistic hit rate. ``<a/>`` always carries ``h='0'``
because the benchmarked client never sends a stanza, so any other value would be a
protocol violation (XEP-0198 "handled-count-too-high").
"""

from __future__ import annotations

import base64
import random
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

__all__ = [
    "CLIENT_JID",
    "SERVER_DOMAIN",
    "count_kinds",
    "iq_result_keys",
    "make_inbound_stream",
    "make_jid_pool",
    "make_outbound_specs",
]

SERVER_DOMAIN = "example.com"
#: The full JID of the (imaginary) client the inbound stream is addressed to.
CLIENT_JID = "bench@example.com/xmppkit-bench"

NS_CLIENT = "jabber:client"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_SID = "urn:xmpp:sid:0"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_DELAY = "urn:xmpp:delay"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_SM = "urn:xmpp:sm:3"

_LOCALPARTS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yusuf",
    # Non-ASCII localparts (all already in their RFC 7622 canonical form).
    "zoë",
    "józef",
    "søren",
    "ümit",
    "андрей",
    "łukasz",
)
_DOMAINS = ("example.com", "example.org", "jabber.example.net", "chat.example.de", "xmpp.example")
_CLIENTS = (
    # (resource prefix, caps node, identity name, identity type)
    ("Conversations", "http://conversations.im", "Conversations", "phone"),
    ("gajim", "https://gajim.org", "Gajim", "pc"),
    ("dino", "https://dino.im", "Dino", "pc"),
    ("monal", "http://monal-im.org", "Monal", "phone"),
    ("psi", "https://psi-plus.com", "Psi+", "pc"),
    ("profanity", "http://profanity-im.github.io", "Profanity", "console"),
    ("siskin", "https://siskin.im", "Siskin IM", "phone"),
    ("movim", "https://movim.eu", "Movim", "web"),
)
_FEATURES = (
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/ibb",
    "http://jabber.org/protocol/nick+notify",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:message-correct:0",
    "urn:xmpp:sid:0",
    "urn:xmpp:ping",
    "urn:xmpp:time",
    "urn:xmpp:avatar:metadata+notify",
    "urn:xmpp:bookmarks:1+notify",
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:file-transfer:5",
    "eu.siacs.conversations.axolotl.devicelist+notify",
    "jabber:iq:version",
    "jabber:x:conference",
    "jabber:x:oob",
)
_PHRASES = (
    "Hi!",
    "Are you around?",
    "See you tomorrow at 10.",
    "ok",
    "lol",
    "I pushed the fix to the branch, can you have a look?",
    "The build is green again.",
    "Did you see the release notes for 2.3?",
    "Let's meet at the café near the station.",
    "Ça marche, à demain !",
    "Grüße aus München – bis später.",  # noqa: RUF001 (intentionally non-ASCII)
    "Привет! Как дела?",
    "今日は会議がありますか？",  # noqa: RUF001 (intentionally non-ASCII)
    "明天见",
    "Ευχαριστώ πολύ",
    "שלום, מה שלומך?",
    "مرحبا، كيف حالك؟",
    "👍",
    "🎉 congrats!",
    "That costs 5 € < 10 € & shipping is free",
    "Use <b>bold</b> & \"quotes\" and 'apostrophes' carefully",
    "x < y && y > z",
    "https://example.org/some/long/path?query=1&other=2#frag",
    "Could you send me the document before the meeting? Thanks a lot in advance.",
    "brb",
    "Yes, that works for me.",
    "No worries 🙂",
)
_SHOWS = ("away", "chat", "dnd", "xa")
_STATUSES = (
    "In a meeting",
    "Working from home",
    "Urlaub bis Montag",
    "En vacances 🌴",
    "На связи",  # noqa: RUF001 (intentionally non-ASCII)
    "Busy <deadline> & stuff",
    "",
)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _rand_id(rng: random.Random, length: int = 12) -> str:
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(length))


def _rand_uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _rand_b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")).decode("ascii")


def make_jid_pool(size: int = 200, seed: int = 1) -> list[str]:
    """Return `size` distinct full JIDs (``local@domain/resource``), deterministically."""
    rng = random.Random(f"jid-pool:{seed}")
    pool: list[str] = []
    seen: set[str] = set()
    while len(pool) < size:
        local = rng.choice(_LOCALPARTS)
        if rng.random() < 0.5:
            local = f"{local}{rng.randrange(100)}"
        domain = rng.choice(_DOMAINS)
        prefix = rng.choice(_CLIENTS)[0]
        resource = f"{prefix}.{_rand_id(rng, 4)}"
        jid = f"{local}@{domain}/{resource}"
        if jid not in seen:
            seen.add(jid)
            pool.append(jid)
    return pool


def _a(value: str) -> str:
    """Quote an attribute value with single quotes, as Prosody and ejabberd do."""
    return "'" + escape(value, _ATTR_ENTITIES) + "'"


_ATTR_ENTITIES = {"'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def _t(value: str) -> str:
    return escape(value)


def _body_text(rng: random.Random) -> str:
    k = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    return " ".join(rng.choice(_PHRASES) for _ in range(k))


def _stamp(rng: random.Random) -> str:
    # A fixed day plus a random offset: deterministic, no clock involved.
    secs = rng.randrange(86_400 * 30)
    day, rem = divmod(secs, 86_400)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    return f"2024-05-{day + 1:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z"


class _Gen:
    def __init__(self, seed: int, pool_size: int) -> None:
        self.rng = random.Random(seed)
        self.pool = make_jid_pool(pool_size, seed)
        # Client software (and thus caps) follows from the resource prefix.
        by_prefix = {c[0]: c for c in _CLIENTS}
        self.client_of = {
            jid: by_prefix[jid.split("/", 1)[1].split(".", 1)[0]] for jid in self.pool
        }
        self.ver_of: dict[str, str] = {}
        for _prefix, node, _name, _type in _CLIENTS:
            self.ver_of[node] = _rand_b64(self.rng, 20)
        self.iq_counter = 0
        self.archive_by = CLIENT_JID.split("/", 1)[0]

    def sender(self) -> str:
        # A skewed distribution: a few chatty contacts, a long tail.
        idx = min(int(self.rng.paretovariate(1.2)) - 1, len(self.pool) - 1)
        if self.rng.random() < 0.5:
            idx = self.rng.randrange(len(self.pool))
        return self.pool[idx]

    def message(self) -> str:
        rng = self.rng
        frm = self.sender()
        parts = [
            f"<message from={_a(frm)} to={_a(CLIENT_JID)} type='chat' id={_a(_rand_uuid(rng))}",
        ]
        if rng.random() < 0.3:
            parts.append(" xml:lang='en'")
        parts.append(">")
        parts.append(f"<body>{_t(_body_text(rng))}</body>")
        parts.append(f"<active xmlns='{NS_CHATSTATES}'/>")
        if rng.random() < 0.4:
            parts.append(f"<request xmlns='{NS_RECEIPTS}'/>")
        parts.append(f"<origin-id xmlns='{NS_SID}' id={_a(_rand_uuid(rng))}/>")
        parts.append(
            f"<stanza-id xmlns='{NS_SID}' by={_a(self.archive_by)} id={_a(_rand_id(rng, 16))}/>"
        )
        if rng.random() < 0.15:
            parts.append(
                f"<delay xmlns='{NS_DELAY}' from={_a(frm.split('@', 1)[1].split('/', 1)[0])}"
                f" stamp={_a(_stamp(rng))}/>"
            )
        parts.append("</message>")
        return "".join(parts)

    def presence(self) -> str:
        rng = self.rng
        frm = self.sender()
        if rng.random() < 0.08:
            return f"<presence from={_a(frm)} to={_a(CLIENT_JID)} type='unavailable'/>"
        _prefix, node, _name, _type = self.client_of[frm]
        parts = [f"<presence from={_a(frm)} to={_a(CLIENT_JID)}"]
        if rng.random() < 0.3:
            parts.append(f" id={_a(_rand_id(rng, 10))}")
        parts.append(">")
        if rng.random() < 0.6:
            parts.append(f"<show>{rng.choice(_SHOWS)}</show>")
        status = rng.choice(_STATUSES)
        if status:
            parts.append(f"<status>{_t(status)}</status>")
        parts.append(f"<priority>{rng.choice((0, 1, 5, 10, 50, -1))}</priority>")
        parts.append(
            f"<c xmlns='{NS_CAPS}' hash='sha-1' node={_a(node)} ver={_a(self.ver_of[node])}/>"
        )
        parts.append("</presence>")
        return "".join(parts)

    def iq_result(self) -> str:
        rng = self.rng
        self.iq_counter += 1
        if rng.random() < 0.2:
            frm = SERVER_DOMAIN
            identities = [("server", "im", "Prosody")]
        else:
            frm = self.sender()
            _prefix, _node, name, itype = self.client_of[frm]
            identities = [("client", itype, name)]
            if rng.random() < 0.3:
                identities.append(("pubsub", "pep", ""))
        iq_id = f"disco{self.iq_counter}-{_rand_id(rng, 6)}"
        parts = [
            f"<iq from={_a(frm)} to={_a(CLIENT_JID)} type='result' id={_a(iq_id)}>",
            f"<query xmlns='{NS_DISCO_INFO}'>",
        ]
        for category, itype, name in identities:
            name_attr = f" name={_a(name)}" if name else ""
            parts.append(f"<identity category={_a(category)} type={_a(itype)}{name_attr}/>")
        nfeat = rng.randint(8, 12)
        for var in sorted(rng.sample(_FEATURES, nfeat)):
            parts.append(f"<feature var={_a(var)}/>")
        parts.append("</query></iq>")
        return "".join(parts)

    def nonza(self) -> str:
        if self.rng.random() < 0.5:
            return f"<r xmlns='{NS_SM}'/>"
        return f"<a xmlns='{NS_SM}' h='0'/>"


def make_inbound_stream(n: int, seed: int = 1, *, pool_size: int = 200) -> tuple[bytes, bytes, int]:
    """Generate a server-to-client stream with `n` top-level elements after the header.

    Returns ``(header, body, nstanzas)`` where `header` is the ``<stream:stream>`` open tag
    (no XML declaration, no features: the stream is assumed to be past negotiation),
    `body` the concatenated top-level elements (never closed with ``</stream:stream>``),
    and `nstanzas` the number of message, presence and iq stanzas in `body` (i.e. `n`
    minus the stream-management nonzas).
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    gen = _Gen(seed, pool_size)
    header = (
        f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'"
        f" from='{SERVER_DOMAIN}' id={_a(_rand_uuid(gen.rng))} version='1.0'>"
    ).encode()
    out: list[str] = []
    nstanzas = 0
    for _ in range(n):
        x = gen.rng.random()
        if x < 0.60:
            out.append(gen.message())
        elif x < 0.85:
            out.append(gen.presence())
        elif x < 0.93:
            out.append(gen.iq_result())
        else:
            out.append(gen.nonza())
            continue
        nstanzas += 1
    return header, "".join(out).encode("utf-8"), nstanzas


def _iter_top_level(body: bytes) -> list[ET.Element]:
    # Wrap in a synthetic root that declares the stream's default namespace.
    root = ET.fromstring(f"<root xmlns='{NS_CLIENT}'>".encode() + body + b"</root>")
    return list(root)


def count_kinds(body: bytes) -> dict[str, int]:
    """Count the top-level elements of `body` by kind.

    Keys: ``message``, ``presence``, ``iq``, ``sm_r``, ``sm_a``, ``other``, plus
    ``stanzas`` (message + presence + iq) and ``nonzas`` (everything else).
    """
    counts = dict.fromkeys(("message", "presence", "iq", "sm_r", "sm_a", "other"), 0)
    names = {
        f"{{{NS_CLIENT}}}message": "message",
        f"{{{NS_CLIENT}}}presence": "presence",
        f"{{{NS_CLIENT}}}iq": "iq",
        f"{{{NS_SM}}}r": "sm_r",
        f"{{{NS_SM}}}a": "sm_a",
    }
    for elem in _iter_top_level(body):
        counts[names.get(elem.tag, "other")] += 1
    counts["stanzas"] = counts["message"] + counts["presence"] + counts["iq"]
    counts["nonzas"] = counts["sm_r"] + counts["sm_a"] + counts["other"]
    return counts


def iq_result_keys(body: bytes) -> list[tuple[str, str]]:
    """``(from, id)`` of every ``<iq type='result'>`` in `body`, in stream order.

    Benchmarks use this to pre-register response handlers, as a client that had sent the
    corresponding requests would have.
    """
    keys: list[tuple[str, str]] = []
    for elem in _iter_top_level(body):
        if elem.tag == f"{{{NS_CLIENT}}}iq" and elem.get("type") == "result":
            keys.append((elem.get("from", ""), elem.get("id", "")))
    return keys


def make_outbound_specs(n: int, seed: int = 1, *, pool_size: int = 200) -> list[tuple[str, str]]:
    """`n` outbound chat messages as ``(to_jid, body_text)``; recipients from the JID pool.

    About a third go to the bare JID (the usual case when starting a chat), the rest to
    a full JID (replying to a specific resource).
    """
    rng = random.Random(f"outbound:{seed}")
    pool = make_jid_pool(pool_size, seed)
    specs: list[tuple[str, str]] = []
    for _ in range(n):
        jid = rng.choice(pool)
        if rng.random() < 0.35:
            jid = jid.split("/", 1)[0]
        specs.append((jid, _body_text(rng)))
    return specs
