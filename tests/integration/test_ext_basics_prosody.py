"""Ping, version, time, receipts, chat states, markers, corrections and stable ids
against Prosody 0.12.

Accounts: erin and frank only. Server state touched: frank's MAM preferences, set to
archive for one test and put back to the configured default (never) at its end.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from _clients import prosody_client
from _prosody import ProsodyInstance

from xmppkit import IQ, JID, Client, IQType, Message, MessageType, Presence
from xmppkit.errors import CancelError, StanzaError
from xmppkit.ext.chatstates import ChatState, ChatStatesService, chat_state_of
from xmppkit.ext.correction import CorrectionService
from xmppkit.ext.delay import delay_of
from xmppkit.ext.markers import Displayed, MarkerKind, MarkersService
from xmppkit.ext.ping import PingService, ping
from xmppkit.ext.receipts import ReceiptRequest, ReceiptsService, Received
from xmppkit.ext.stable_ids import NS_SID, StableIdsService, StanzaId, origin_id, stanza_ids
from xmppkit.ext.time import EntityTimeServer, query_time
from xmppkit.ext.version import VersionInfo, VersionServer, query_version
from xmppkit.service import Service

pytestmark = pytest.mark.integration
NS_MAM = "urn:xmpp:mam:2"


async def next_message(inbox: object) -> Message:
    with trio.fail_after(10):
        return await inbox.__anext__()  # type: ignore[attr-defined,no-any-return]


@asynccontextmanager
async def erin_and_frank(
    prosody: ProsodyInstance, *services: type[Service], **options: Any
) -> AsyncIterator[tuple[Client, Client]]:
    erin = prosody_client(prosody, "erin", "basics", **options)
    frank = prosody_client(prosody, "frank", "basics", **options)
    for client in (erin, frank):
        for cls in services:
            client.summon(cls)
    async with erin, frank:
        with trio.fail_after(30):
            # Available, like a chat client: Prosody routes bare-JID messages only to
            # available resources (RFC 6121 8.5.2).
            for client in (erin, frank):
                await client.send(Presence())
            yield erin, frank


async def test_ping_server_and_peer(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, PingService) as (erin, frank):
        service = erin.summon(PingService)
        for target in (None, prosody.domain, frank.local_jid, frank.local_jid.bare()):
            rtt = await service.ping(target, timeout=10)
            assert 0 <= rtt < 10, target
        # Prosody answers for an offline resource with service-unavailable, from that
        # resource's address (XEP-0199 section 7): it proves nothing, so it is raised.
        with pytest.raises(CancelError) as caught:
            await service.ping(JID("frank", prosody.domain, "nowhere"), timeout=10)
        assert caught.value.condition == "service-unavailable"
        # Without the service, frank's client answers service-unavailable too.
        await frank.summon(PingService).shutdown()
        with pytest.raises(CancelError, match="service-unavailable"):
            await ping(erin, frank.local_jid, timeout=10)


async def test_version_of_the_server_and_a_peer(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, VersionServer) as (erin, frank):
        server = await query_version(erin, prosody.domain, timeout=10)
        assert server.name == "Prosody"
        assert server.version.startswith("0.12")
        # Prosody reveals its OS unless hide_os_type is set.
        assert server.os == "Linux"
        assert await query_version(erin, timeout=10) == server  # no 'to': the server
        # mod_version answers only at the host, not for an account's bare JID.
        with pytest.raises(StanzaError, match="service-unavailable"):
            await query_version(erin, frank.local_jid.bare(), timeout=10)
        frank.summon(VersionServer).os = "TestOS"
        peer = await query_version(erin, frank.local_jid, timeout=10)
        assert peer == VersionInfo("xmppkit", peer.version, "TestOS")


async def test_time_of_the_server_and_a_peer(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, EntityTimeServer) as (erin, frank):
        for target in (prosody.domain, None, frank.local_jid.bare()):
            local = await query_time(erin, target, timeout=10)
            # Prosody 0.12 always reports +00:00 (its TODO: no platform time zone).
            assert local.utcoffset() == dt.timedelta(0), target
            assert abs(local - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
        frank.summon(EntityTimeServer).offset = dt.timedelta(hours=-3, minutes=-30)
        peer = await query_time(erin, frank.local_jid, timeout=10)
        assert peer.utcoffset() == dt.timedelta(hours=-3, minutes=-30)


async def test_receipts_between_two_clients(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, ReceiptsService) as (erin, frank):
        receipts = erin.summon(ReceiptsService)
        async with frank.messages() as inbox:
            content = Message(to=frank.local_jid.bare(), type_=MessageType.CHAT, body="ping?")
            await erin.send(content)
            got = await next_message(inbox)
            assert got.get_payload(ReceiptRequest) is not None
            receipt = await receipts.wait_for_receipt(content.id_ or "", timeout=10)
        assert receipt.from_ == frank.local_jid
        assert receipt.message.get_payload(Received) == Received(content.id_ or "")
        # The full JID is known to support receipts now (it answered): requested too.
        assert receipts.supports(frank.local_jid) is True
        direct = Message(to=frank.local_jid, type_=MessageType.CHAT, body="direct")
        await erin.send(direct)
        assert direct.get_payload(ReceiptRequest) is not None
        assert (await receipts.wait_for_receipt(direct.id_ or "", timeout=10)).from_ == (
            frank.local_jid
        )


async def test_chat_states_between_two_clients(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, ChatStatesService) as (erin, frank):
        erin_states, frank_states = erin.summon(ChatStatesService), frank.summon(ChatStatesService)
        async with (
            frank_states.on_chat_state.subscribe() as frank_sees,
            erin_states.on_chat_state.subscribe() as erin_sees,
        ):
            await erin.send(Message(to=frank.local_jid, type_=MessageType.CHAT, body="hi"))
            with trio.fail_after(10):
                first = await frank_sees.__anext__()
            assert (first.jid, first.state) == (erin.local_jid, ChatState.ACTIVE)
            assert await frank_states.send_chat_state(erin.local_jid.bare(), ChatState.COMPOSING)
            with trio.fail_after(10):
                typing = await erin_sees.__anext__()
            assert (typing.jid, typing.state) == (frank.local_jid, ChatState.COMPOSING)
            # Prosody delivers the standalone notification as it was sent.
            assert [child.tag for child in typing.message.element] == [
                "{http://jabber.org/protocol/chatstates}composing"
            ]
            assert chat_state_of(typing.message) is ChatState.COMPOSING
            assert not await frank_states.send_chat_state(erin.local_jid, ChatState.COMPOSING)


async def test_markers_and_corrections_between_two_clients(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, MarkersService, CorrectionService) as (erin, frank):
        async with (
            frank.messages() as frank_inbox,
            erin.summon(MarkersService).on_marker.subscribe() as markers,
            frank.summon(CorrectionService).on_correction.subscribe() as corrections,
        ):
            sent = Message(to=frank.local_jid, type_=MessageType.CHAT, body="teh end")
            await erin.send(sent)
            got = await next_message(frank_inbox)
            assert await frank.summon(MarkersService).mark(got)
            with trio.fail_after(10):
                marker = await markers.__anext__()
            assert (marker.kind, marker.id, marker.from_) == (
                MarkerKind.DISPLAYED,
                sent.id_,
                frank.local_jid,
            )
            assert marker.message.get_payload(Displayed) == Displayed(sent.id_ or "")
            await erin.summon(CorrectionService).correct(sent, "the end")
            with trio.fail_after(10):
                correction = await corrections.__anext__()
            assert (correction.original_id, correction.body) == (sent.id_, "the end")


async def set_archiving(client: Client, default: str) -> None:
    prefs = ET.Element(f"{{{NS_MAM}}}prefs", {"default": default})
    await client.send(IQ(type_=IQType.SET, payload=prefs), timeout=10)


async def test_origin_id_and_stanza_id(prosody: ProsodyInstance) -> None:
    async with erin_and_frank(prosody, StableIdsService) as (erin, frank):
        frank_ids = frank.summon(StableIdsService)
        frank_bare = frank.local_jid.bare()
        # Prosody's mod_mam announces urn:xmpp:sid:0 on the account (checked by the
        # service at session start, here once more explicitly).
        assert await frank_ids.verify(frank_bare, timeout=10)
        assert frank_ids.is_trusted(frank_bare)

        def with_forgery(body: str) -> Message:
            # Erin claims stanza-ids by frank's account and by her own.
            return Message(
                to=frank.local_jid,
                type_=MessageType.CHAT,
                body=body,
                payloads=(StanzaId("forged", frank_bare), StanzaId("mine", erin.local_jid.bare())),
            )

        async with frank.messages() as inbox:
            # Not archived (default_archive_policy = false): no stanza-id is added, but
            # the forged one by frank's account is still removed (XEP-0359 rule 2), and
            # so is the one by erin's account, on its way out of her account.
            plain = with_forgery("not archived")
            await erin.send(plain)
            got = await next_message(inbox)
            assert origin_id(got) == origin_id(plain) is not None
            assert stanza_ids(got) == []
            assert frank_ids.stanza_id(got) is None
            await set_archiving(frank, "always")
            try:
                honest = Message(to=frank.local_jid, type_=MessageType.CHAT, body="archived")
                await erin.send(honest)
                archived = await next_message(inbox)
                forged = with_forgery("archived, forged")
                await erin.send(forged)
                archived_forged = await next_message(inbox)
            finally:
                await set_archiving(frank, "never")
        # Archived: Prosody adds its stanza-id, by frank's bare JID.
        ids = stanza_ids(archived)
        assert [s.by for s in ids] == [frank_bare]
        assert frank_ids.stanza_id(archived) == ids[0].id
        assert origin_id(archived) == origin_id(honest) is not None
        assert delay_of(archived) is None  # delivered live
        # Prosody 0.12.3 does not remove a forged stanza-id by the account when it
        # archives the message (mod_mam clones the unstripped stanza): both arrive,
        # Prosody's last. Two ids by one entity break XEP-0359 rule 4, so the service
        # reads neither, rather than risk the forged one.
        ids = stanza_ids(archived_forged)
        assert [(s.by, s.id == "forged") for s in ids] == [(frank_bare, True), (frank_bare, False)]
        assert frank_ids.stanza_id(archived_forged) is None
        assert archived_forged.element.find(f"{{{NS_SID}}}origin-id") is not None
