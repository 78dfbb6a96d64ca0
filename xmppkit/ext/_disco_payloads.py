"""The payloads of service discovery (XEP-0030) and its extension forms (XEP-0128).

Private: import them from :mod:`xmppkit.ext.disco`, which re-exports them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, Self, final

from ..jid import JID
from ..stanza import Payload
from .forms import NS_DATA, Form

__all__ = ["NS_INFO", "NS_ITEMS", "Identity", "InfoQuery", "Item", "ItemsQuery"]

NS_INFO: Final = "http://jabber.org/protocol/disco#info"
NS_ITEMS: Final = "http://jabber.org/protocol/disco#items"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
_IDENTITY: Final = f"{{{NS_INFO}}}identity"
_FEATURE: Final = f"{{{NS_INFO}}}feature"
_ITEM: Final = f"{{{NS_ITEMS}}}item"
_FORM: Final = f"{{{NS_DATA}}}x"


@final
@dataclass(frozen=True)
class Identity:
    """A disco identity (XEP-0030 section 3.1): category, type, optional name and
    language. The registry of categories and types is the XMPP Registrar's."""

    category: str
    type_: str
    name: str | None = None
    lang: str | None = None

    def to_element(self) -> ET.Element:
        """The ``<identity/>`` element."""
        el = ET.Element(_IDENTITY, {"category": self.category, "type": self.type_})
        if self.name is not None:
            el.set("name", self.name)
        if self.lang is not None:
            el.set(_XML_LANG, self.lang)
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Identity:
        """Parse an ``<identity/>``.

        Raises:
            ValueError: ``category`` or ``type`` is missing (both are required).
        """
        category, type_ = element.get("category"), element.get("type")
        if category is None or type_ is None:
            raise ValueError("a disco identity needs category and type (XEP-0030 3.1)")
        return cls(category, type_, element.get("name"), element.get(_XML_LANG))


@final
@dataclass(frozen=True)
class Item:
    """A disco item (XEP-0030 section 4.1): an address, optionally a node and a name."""

    jid: JID
    node: str | None = None
    name: str | None = None

    def to_element(self) -> ET.Element:
        """The ``<item/>`` element."""
        el = ET.Element(_ITEM, {"jid": str(self.jid)})
        if self.node is not None:
            el.set("node", self.node)
        if self.name is not None:
            el.set("name", self.name)
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Item:
        """Parse an ``<item/>``.

        Raises:
            ValueError: ``jid`` is missing or not a valid JID.
        """
        jid = element.get("jid")
        if jid is None:
            raise ValueError("a disco item needs a jid (XEP-0030 4.1)")
        return cls(JID.fromstr(jid), element.get("node"), element.get("name"))


def _node_attrib(node: str | None) -> dict[str, str]:
    return {} if node is None else {"node": node}


@final
@dataclass(frozen=True)
class InfoQuery(Payload, namespace=NS_INFO, tag="query"):
    """A ``disco#info`` query or answer (XEP-0030 section 3; forms: XEP-0128).

    A request carries only ``node``; an answer also the identities, features and
    extension forms, in wire order.
    """

    node: str | None = None
    identities: tuple[Identity, ...] = ()
    features: tuple[str, ...] = ()
    forms: tuple[Form, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            raise TypeError("features is a sequence of strings, not one string")
        object.__setattr__(self, "identities", tuple(self.identities))
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "forms", tuple(self.forms))

    def has_feature(self, var: str) -> bool:
        """True if ``var`` is among the features."""
        return var in self.features

    def form(self, form_type: str) -> Form | None:
        """The extension form with this ``FORM_TYPE`` (XEP-0128), or None."""
        for f in self.forms:
            if f.form_type == form_type:
                return f
        return None

    def to_element(self) -> ET.Element:
        """The ``<query xmlns='http://jabber.org/protocol/disco#info'/>`` element."""
        el = ET.Element(self.TAG, _node_attrib(self.node))
        for identity in self.identities:
            el.append(identity.to_element())
        for var in self.features:
            ET.SubElement(el, _FEATURE, {"var": var})
        for form in self.forms:
            el.append(form.to_element())
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse a disco#info ``<query/>``; unknown children are skipped.

        Raises:
            ValueError: an identity, feature or form is malformed.
        """
        features = []
        for f in element.iterfind(_FEATURE):
            var = f.get("var")
            if var is None:
                raise ValueError("a disco feature needs a var (XEP-0030 3.1)")
            features.append(var)
        return cls(
            node=element.get("node"),
            identities=tuple(Identity.from_element(i) for i in element.iterfind(_IDENTITY)),
            features=tuple(features),
            forms=tuple(Form.from_element(x) for x in element.iterfind(_FORM)),
        )


@final
@dataclass(frozen=True)
class ItemsQuery(Payload, namespace=NS_ITEMS, tag="query"):
    """A ``disco#items`` query or answer (XEP-0030 section 4)."""

    node: str | None = None
    items: tuple[Item, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))

    def to_element(self) -> ET.Element:
        """The ``<query xmlns='http://jabber.org/protocol/disco#items'/>`` element."""
        el = ET.Element(self.TAG, _node_attrib(self.node))
        for item in self.items:
            el.append(item.to_element())
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse a disco#items ``<query/>``; unknown children (e.g. XEP-0059 ``<set/>``)
        are skipped.

        Raises:
            ValueError: an item is malformed.
        """
        return cls(
            node=element.get("node"),
            items=tuple(Item.from_element(i) for i in element.iterfind(_ITEM)),
        )
