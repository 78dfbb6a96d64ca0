"""Pin the public surface: what each public module exports, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest

import xmppkit

PUBLIC = {
    "xmppkit": {
        "Client",
        "ClientState",
        "PresenceManagedClient",
        "StanzaState",
        "StanzaToken",
        "connect_client",
        "open_client",
        "wrap_client_stream",
        "IQ",
        "IQType",
        "JID",
        "Message",
        "MessageType",
        "Payload",
        "Presence",
        "PresenceShow",
        "PresenceType",
        "__version__",
    },
    "xmppkit.xml": {
        "DEFAULT_MAX_DEPTH",
        "DEFAULT_MAX_STANZA_SIZE",
        "ElementReceived",
        "NS_CLIENT",
        "NS_STREAMS",
        "ParserEvent",
        "RawEvent",
        "STREAM_FOOTER",
        "StreamClosed",
        "StreamOpened",
        "XMLStreamParser",
        "serialize",
        "serialize_str",
        "stream_header",
    },
    "xmppkit.protocol": {
        "NEED_DATA",
        "AckReceived",
        "StreamManagementEnabled",
        "StreamManagementState",
        "StreamResumed",
        "ResumptionFailed",
        "Resumable",
        "Authenticated",
        "ClientStream",
        "ConnectionEnded",
        "Credentials",
        "ElementReceived",
        "Event",
        "FeaturesReceived",
        "NeedData",
        "NonzaReceived",
        "SASLMechanism",
        "ScramClient",
        "StanzaReceived",
        "StartTLSAccepted",
        "StreamClosed",
        "StreamClosedByPeer",
        "StreamErrorReceived",
        "StreamEstablished",
        "StreamOpened",
        "StreamState",
        "XMLStreamParser",
        "choose_mechanism",
    },
    "xmppkit.testing": {
        "ClientAuthenticated",
        "ClientClosed",
        "ConnectionGate",
        "CoreLink",
        "ElementFromClient",
        "FaultProxy",
        "InMemoryServer",
        "ProxyConnection",
        "ResourceBound",
        "ServerConfig",
        "ServerStream",
        "TLSRequested",
        "open_proxy",
        "open_server",
        "serve_core",
    },
}


def public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {
        name
        for name in dir(module)
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(getattr(module, name), type(importlib))  # submodules
    }


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_surface_is_pinned(module_name: str) -> None:
    assert public_names(module_name) == PUBLIC[module_name]


def test_api_md_names_are_importable() -> None:
    from xmppkit import IQ, JID, IQType, Message, MessageType, Presence, PresenceType  # noqa: F401
    from xmppkit.errors import (  # noqa: F401
        AuthenticationError,
        ConnectionLost,
        StanzaError,
        StreamError,
    )
    from xmppkit.protocol import XMLStreamParser  # noqa: F401
    from xmppkit.xml import serialize  # noqa: F401

    assert xmppkit.JID is JID


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("xmppkit").joinpath("py.typed").is_file()


def test_init_defines_nothing() -> None:
    # The package __init__ only re-exports: every public object comes from elsewhere.
    for name in PUBLIC["xmppkit"] - {"__version__"}:
        assert getattr(xmppkit, name).__module__ != "xmppkit"


def test_the_core_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from xmppkit.cli import main

    assert main(["demo", "--core", "--width", "80"]) == 0
    out = capsys.readouterr().out
    assert "event: StreamEstablished jid=juliet@example.test/balcony" in out
    assert "event: Authenticated mechanism=SCRAM-SHA-256-PLUS" in out
    assert "final state: closed" in out


def test_the_demo_runs_two_clients_on_the_embedded_server() -> None:
    import io

    from xmppkit.cli import main

    out = io.StringIO()
    assert main(["demo"], out) == 0
    text = out.getvalue()
    assert "romeo@verona.test/garden -> juliet@verona.test/balcony: chat message" in text
    assert "iq get ping" in text
    assert "feature urn:xmppkit:rpc:actions:0" in text
    assert "rpc verses.line(act=2, scene=2) -> \"What's in a name?" in text
    assert "rpc Balcony.swear(by='the moon') -> 'O, swear not by the moon'" in text
    assert "both clients closed cleanly" in text


def test_service_module_exports_the_seed_names() -> None:
    import xmppkit.service as service

    promised = {
        "Service",
        "iq_handler",
        "message_handler",
        "presence_handler",
        "inbound_message_filter",
        "inbound_presence_filter",
        "outbound_message_filter",
        "outbound_presence_filter",
        "depsignal",
        "depfilter",
        "attrsignal",
        "HandlerSpec",
        "add_handler_spec",
        "Descriptor",
        "is_iq_handler",
        "is_message_handler",
        "is_presence_handler",
        "is_inbound_message_filter",
        "is_inbound_presence_filter",
        "is_outbound_message_filter",
        "is_outbound_presence_filter",
        "is_depsignal_handler",
        "is_depfilter_handler",
        "is_attrsignal_handler",
    }
    assert set(service.__all__) == promised | {"Meta"}
    for name in service.__all__:
        assert getattr(service, name).__module__ == "xmppkit.service"


@pytest.mark.parametrize(
    ("module_name", "service_names"),
    [
        ("xmppkit.ext.disco", {"DiscoServer", "DiscoClient"}),
        ("xmppkit.ext.caps", {"EntityCapsService"}),
        ("xmppkit.ext.ping", {"PingService"}),
        ("xmppkit.ext.roster", {"RosterClient"}),
        ("xmppkit.ext.presence", {"PresenceServer", "PresenceClient"}),
        ("xmppkit.ext.carbons", {"CarbonsClient"}),
        ("xmppkit.ext.blocking", {"BlockingClient"}),
        ("xmppkit.ext.csi", {"CSIClient"}),
    ],
)
def test_each_extension_has_its_service(module_name: str, service_names: set[str]) -> None:
    from xmppkit.service import Service

    module = importlib.import_module(module_name)
    assert service_names <= set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name
    for name in service_names:
        assert issubclass(getattr(module, name), Service)


def test_rpc_exports_the_promised_names() -> None:
    import xmppkit.rpc as rpc

    promised = {"RemoteAPI", "incoming", "outgoing", "Action", "ActionError", "Error"}
    promised |= {"stub_action", "JobError", "CallActionError", "CallJobError"}
    assert promised <= set(dir(rpc))
    for name in dir(rpc):
        if not name.startswith("_"):
            assert getattr(rpc, name) is not None
    for call in ("call_action", "call_actions", "call_actions_parallel", "call_jobs_parallel"):
        assert callable(getattr(rpc.ActionClient, call))
        assert callable(getattr(rpc.LocalActionClient, call))
