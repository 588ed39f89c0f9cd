"""A replay's DOM as rrweb node ids, kept just well enough to name the elements users touched."""

from __future__ import annotations

import re

import msgspec
from msgspec import UNSET, UnsetType

# rrweb-snapshot NodeType values (Document 0, DocumentType 1, ...).
ELEMENT, TEXT = 2, 3

LABEL_CHARS = 40
# Descendants visited when collecting a button's text: enough for any real label, bounded for
# a click on <body> of a huge page.
TEXT_NODE_BUDGET = 200
# How far up from the clicked node we look for the control it belongs to (a click lands on the
# <span> or <svg> inside a <button>).
ANCESTOR_HOPS = 8

_SKIP_TEXT_TAGS = frozenset({"script", "style", "noscript", "template", "head", "title"})
_INTERACTIVE_TAGS = frozenset(
    {"a", "button", "input", "select", "textarea", "label", "summary", "option"}
)
# ARIA roles that make an element a control, named after the role.
_ROLES = frozenset({"button", "link", "menuitem", "tab", "checkbox", "radio", "switch", "option"})
_BUTTON_INPUT_TYPES = frozenset({"submit", "button", "reset"})
# Class names that are build artefacts (CSS modules, styled-components, emotion) say nothing.
_GENERATED_CLASS = re.compile(r"^(?:css|sc|jsx|emotion|svelte)-[A-Za-z0-9]+$|__[A-Za-z0-9]{5}$")
_HEX_RUN = re.compile(r"[0-9a-f]{6,}")

AttrValue = str | int | float | bool | None


class Attrs(msgspec.Struct, omit_defaults=True):
    """The attributes that name an element; every other attribute is skipped unparsed.

    UNSET means "not mentioned" (so an attribute mutation can tell removal, null, from no change).
    """

    id: AttrValue | UnsetType = UNSET
    class_: AttrValue | UnsetType = msgspec.field(default=UNSET, name="class")
    aria_label: AttrValue | UnsetType = msgspec.field(default=UNSET, name="aria-label")
    title: AttrValue | UnsetType = UNSET
    alt: AttrValue | UnsetType = UNSET
    name: AttrValue | UnsetType = UNSET
    type: AttrValue | UnsetType = UNSET
    role: AttrValue | UnsetType = UNSET
    placeholder: AttrValue | UnsetType = UNSET
    # Only ever used as the label of <input type=submit|button|reset>; a text field's value
    # is user data and is never read.
    value: AttrValue | UnsetType = UNSET


# (struct field, attribute name) pairs.
_ATTR_NAMES = tuple((f.name, f.encode_name) for f in msgspec.structs.fields(Attrs))


class SNode(msgspec.Struct):
    """A serialized rrweb node (full snapshot or mutation add)."""

    type: int
    id: int
    tagName: str | None = None  # rrweb's field names
    attributes: Attrs | None = None
    childNodes: list[SNode] | None = None
    textContent: str | None = None


class Add(msgspec.Struct):
    """A node added under parentId, before nextId."""

    parentId: int
    node: SNode
    nextId: int | None = None


class Remove(msgspec.Struct):
    """A node removed from parentId."""

    id: int
    parentId: int | None = None


class TextChange(msgspec.Struct):
    """New text of a text node."""

    id: int
    value: str | None = None


class AttrChange(msgspec.Struct):
    """Changed attributes of an element (null means removed)."""

    id: int
    attributes: Attrs


def _attr_text(value: AttrValue | UnsetType) -> str | None:
    if value is None or value is False or value is UNSET:
        return None
    if value is True:
        return ""
    return str(value)


def attrs_of(node: SNode) -> dict[str, str]:
    """The naming attributes of a node as strings (removed and absent ones left out)."""
    attrs = node.attributes
    if attrs is None:
        return {}
    out: dict[str, str] = {}
    for field_name, attr in _ATTR_NAMES:
        text = _attr_text(getattr(attrs, field_name))
        if text is not None:
            out[attr] = text
    return out


def clean_text(text: str | None) -> str | None:
    """Collapse whitespace; None when nothing is left."""
    if not text:
        return None
    out = " ".join(text.split())
    return out or None


def short(text: str, limit: int = LABEL_CHARS) -> str:
    """Cap a label, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def is_masked(text: str) -> bool:
    """rrweb masks text by replacing every character with '*'."""
    return bool(text) and set(text) <= {"*", " "}


class Dom:
    """Node map of the current page, updated from full snapshots and mutation events.

    The decoded snapshot structs are the nodes (no copy per node): a page of thousands of
    nodes costs two dict entries each, and names are only worked out for clicked elements.
    """

    def __init__(self) -> None:
        self.nodes: dict[int, SNode] = {}
        self.parents: dict[int, int] = {}

    def load_snapshot(self, root: SNode) -> None:
        """Replace the map with a full snapshot's tree (node ids restart on every page load)."""
        self.nodes = {}
        self.parents = {}
        self._register(root)

    def _register(self, root: SNode) -> None:
        # Iterative: real pages nest deeper than is comfortable for recursion.
        nodes, parents = self.nodes, self.parents
        stack = [root]
        while stack:
            node = stack.pop()
            nodes[node.id] = node
            kids = node.childNodes
            if kids:
                node_id = node.id
                for kid in kids:
                    parents[kid.id] = node_id
                stack.extend(kids)

    def _remove(self, node_id: int) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        parent = self.nodes.get(self.parents.get(node_id, -1))
        if parent is not None and parent.childNodes:
            parent.childNodes = [k for k in parent.childNodes if k.id != node_id]
        stack = [node]
        while stack:
            gone = stack.pop()
            self.nodes.pop(gone.id, None)
            self.parents.pop(gone.id, None)
            if gone.childNodes:
                stack.extend(gone.childNodes)

    def _add(self, add: Add) -> None:
        node = add.node
        if node.id in self.nodes:  # a moved node: unlink it from its old place first
            self._remove(node.id)
        parent = self.nodes[add.parentId]
        kids = parent.childNodes
        if kids is None:
            kids = parent.childNodes = []
        index = len(kids)
        if add.nextId is not None:
            for i, kid in enumerate(kids):
                if kid.id == add.nextId:
                    index = i
                    break
        kids.insert(index, node)
        self.parents[node.id] = add.parentId
        self._register(node)

    def apply_mutation(
        self,
        adds: list[Add] | None,
        removes: list[Remove] | None,
        texts: list[TextChange] | None,
        attributes: list[AttrChange] | None,
    ) -> None:
        """Apply one mutation event in rrweb's order: removes, adds, texts, attributes."""
        for rem in removes or ():
            self._remove(rem.id)
        # An add may name a parent that a later add in the same event creates; park it until then.
        waiting: dict[int, list[Add]] = {}
        for add in adds or ():
            ready = [add]
            while ready:
                item = ready.pop()
                if item.parentId in self.nodes:
                    self._add(item)
                    ready.extend(waiting.pop(item.node.id, ()))
                else:
                    waiting.setdefault(item.parentId, []).append(item)
        for change in texts or ():
            node = self.nodes.get(change.id)
            if node is not None:
                node.textContent = change.value
        for attr_change in attributes or ():
            node = self.nodes.get(attr_change.id)
            if node is None:
                continue
            if node.attributes is None:
                node.attributes = Attrs()
            for field_name, _attr in _ATTR_NAMES:
                value = getattr(attr_change.attributes, field_name)
                if value is not UNSET:
                    setattr(node.attributes, field_name, value)  # None: removed

    # --- naming -------------------------------------------------------------------------

    def resolve(self, node_id: int) -> int:
        """The control a click on node_id belongs to (its nearest interactive ancestor)."""
        current: int | None = node_id
        for _ in range(ANCESTOR_HOPS):
            node = self.nodes.get(current) if current is not None else None
            if node is None:
                break
            if node.type == ELEMENT and (
                _tag(node) in _INTERACTIVE_TAGS or _attr_text(_role(node)) in _ROLES
            ):
                return node.id
            current = self.parents.get(node.id)
        node = self.nodes.get(node_id)
        # A click reported on a text node names its element.
        if node is not None and node.type != ELEMENT and node_id in self.parents:
            return self.parents[node_id]
        return node_id

    def text_of(self, node_id: int) -> str | None:
        """Visible text under a node (img alt included), whitespace collapsed, capped."""
        parts: list[str] = []
        size = 0
        root = self.nodes.get(node_id)
        stack = [root] if root is not None else []
        budget = TEXT_NODE_BUDGET
        while stack and budget > 0 and size < 4 * LABEL_CHARS:
            budget -= 1
            node = stack.pop()
            if node.type == TEXT:
                if node.textContent:
                    parts.append(node.textContent)
                    size += len(node.textContent)
                continue
            tag = _tag(node)
            if tag in _SKIP_TEXT_TAGS:
                continue
            if tag == "img":
                alt = _attr_text(node.attributes.alt) if node.attributes else None
                if alt:
                    parts.append(alt)
                    size += len(alt)
            if node.childNodes:
                stack.extend(reversed(node.childNodes))
        return clean_text(" ".join(parts))

    def describe(self, node_id: int) -> str:
        """A readable name such as `button "Pay now"`, `link "Checkout"`, `input #email`."""
        node = self.nodes.get(node_id)
        if node is None:
            return "element"
        if node.type != ELEMENT:
            parent = self.parents.get(node_id)
            return self.describe(parent) if parent is not None else "text"
        attrs = attrs_of(node)
        tag = _tag(node)
        role = attrs.get("role", "")
        kind = role if role in _ROLES else ""
        named = _first(attrs.get("aria-label"), attrs.get("title"))
        masked = False
        if tag == "input":
            input_type = attrs.get("type", "text").lower()
            if input_type in _BUTTON_INPUT_TYPES:
                kind = "button"
                named = named or _first(attrs.get("value"), input_type.capitalize())
            elif input_type == "image":
                kind, named = "button", named or _first(attrs.get("alt"))
            elif input_type in ("checkbox", "radio"):
                kind = kind or input_type
            else:
                kind = "input"
            return _form(kind, named, attrs, input_type)
        if tag in ("select", "textarea"):
            return _form(tag, named, attrs, None)
        if tag == "img":
            return _named("img", named or _first(attrs.get("alt")), _ident(attrs), tag)
        if tag == "a":
            kind = kind or "link"
        elif tag == "button":
            kind = kind or "button"
        elif tag in ("label", "summary", "option"):
            kind = kind or tag
        if kind:
            if not named:
                text = self.text_of(node_id)
                if text and is_masked(text):
                    masked = True
                else:
                    named = text
            label = _named(kind, named, _ident(attrs), tag)
            return f"{label} (masked)" if masked and not named else label
        # A plain element: CSS-like selector, plus its text when that is short enough to read.
        selector = tag + _selector(attrs)
        if named:
            return f'{selector} "{short(named)}"'
        text = self.text_of(node_id)
        if text and len(text) <= LABEL_CHARS and not is_masked(text):
            return f'{selector} "{text}"'
        return selector


def _tag(node: SNode) -> str:
    return (node.tagName or "").lower()


def _role(node: SNode) -> AttrValue | UnsetType:
    return node.attributes.role if node.attributes is not None else UNSET


def _first(*values: str | None) -> str | None:
    for value in values:
        text = clean_text(value)
        if text and not is_masked(text):
            return text
    return None


def _ident(attrs: dict[str, str]) -> str | None:
    if attrs.get("id"):
        return "#" + attrs["id"]
    if attrs.get("name"):
        return f"[name={attrs['name']}]"
    classes = _classes(attrs)
    return "." + ".".join(classes) if classes else None


def _classes(attrs: dict[str, str]) -> list[str]:
    return [c for c in attrs.get("class", "").split() if not _hashed(c)][:2]


def _hashed(name: str) -> bool:
    # "css-1x2y3z", "Button__a1b2c", "cart-3f9a1c": a hex run only counts if it has a digit,
    # so words such as "facade" survive.
    if _GENERATED_CLASS.search(name):
        return True
    return any(any(ch.isdigit() for ch in run) for run in _HEX_RUN.findall(name))


def _selector(attrs: dict[str, str]) -> str:
    if attrs.get("id"):
        return "#" + attrs["id"]
    classes = _classes(attrs)
    return "." + ".".join(classes) if classes else ""


def _named(kind: str, named: str | None, ident: str | None, fallback: str) -> str:
    if named:
        return f'{kind} "{short(named)}"'
    if ident:
        return f"{kind} {ident}"
    return fallback


def _form(kind: str, named: str | None, attrs: dict[str, str], input_type: str | None) -> str:
    # Fields are named by their label attributes or identity, never by what was typed.
    ident = _ident(attrs)
    if not named and not ident:
        named = _first(attrs.get("placeholder"))
    plain = kind == "input" and input_type not in (None, "text")
    return _named(kind, named, ident, f"input[type={input_type}]" if plain else kind)
