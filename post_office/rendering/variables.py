"""The variables a template uses, as a sample context to preview it with.

:func:`sample_context` walks the compiled Django template (variables, filter
arguments, ``{% for %}``, ``{% if %}``, ``{% with %}``, ``{% blocktranslate %}``
and any tag whose arguments are template expressions) and builds a nested dict
shaped like the data the template reads: ``{{ user.name }}`` gives
``{"user": {"name": "name"}}``, ``{% for item in order.items %}{{ item.price }}``
gives ``{"order": {"items": [{"price": "price"}]}}``. Names the template binds
itself (loop variables, ``with``, ``as``) are followed to where their data
comes from, and never appear at the top level on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.template import Engine
from django.template.base import FilterExpression, Node, NodeList, TokenType, Variable
from django.template.defaulttags import ForNode, IfNode, WithNode
from django.templatetags.i18n import BlockTranslateNode

from ..restricted import database_template_engine
from ..validation import compile_source

__all__ = ["sample_context", "template_variables"]

#: Names Django binds while rendering, never read from the caller's context.
_BUILTIN_NAMES = frozenset({"forloop", "block", "True", "False", "None"})
#: Attributes by which tags bind a name for the rest of their block (``as name``).
_BINDING_ATTRIBUTES = ("asvar", "target_var", "var_name", "variable_name")


class _Slot:
    """One place in the sample data: a leaf, a dict of children, or a list of one item."""

    __slots__ = ("children", "item", "parts")

    def __init__(self) -> None:
        self.children: dict[str, _Slot] = {}
        self.item: _Slot | None = None
        self.parts: list[_Slot] = []

    def child(self, name: str) -> _Slot:
        if name.isdigit():  # items.0.name: an element of a list
            return self.element()
        return self.children.setdefault(name, _Slot())

    def element(self) -> _Slot:
        if self.item is None:
            self.item = _Slot()
        return self.item

    def sample(self, name: str) -> Any:
        if self.item is not None:
            if self.item.parts:
                return [[part.sample(f"{name}_{index}") for index, part in enumerate(self.item.parts, 1)]]
            return [self.item.sample(name)]
        if self.children:
            return {key: slot.sample(key) for key, slot in self.children.items()}
        return name


Scope = dict[str, _Slot]


class _Walker:
    def __init__(self) -> None:
        self.root = _Slot()

    def lookup(self, lookups: Iterable[str], scope: Scope) -> _Slot:
        names = list(lookups)
        first = names[0]
        slot = scope[first] if first in scope else (_Slot() if first in _BUILTIN_NAMES else self.root.child(first))
        for name in names[1:]:
            slot = slot.child(name)
        return slot

    def expression(self, expression: Any, scope: Scope) -> _Slot:
        """Record what an expression reads; return the slot of its value (a detached one when filtered)."""
        if isinstance(expression, Variable):
            if expression.lookups is None:
                return _Slot()
            return self.lookup(expression.lookups, scope)
        if not isinstance(expression, FilterExpression):
            return _Slot()
        for _filter, arguments in expression.filters:
            for is_variable, argument in arguments:
                if is_variable:
                    self.expression(argument, scope)
        slot = self.expression(expression.var, scope)
        return slot if not expression.filters else _Slot()

    def nodelist(self, nodes: Any, scope: Scope) -> None:
        scope = dict(scope)  # names bound with "as" last until the end of their block
        for node in nodes or ():
            self.node(node, scope)
            for attribute in _BINDING_ATTRIBUTES:
                name = getattr(node, attribute, None)
                if isinstance(name, str) and name:
                    scope[name] = _Slot()

    def node(self, node: Node, scope: Scope) -> None:
        if isinstance(node, ForNode):
            self.for_node(node, scope)
        elif isinstance(node, IfNode):
            for condition, nodelist in node.conditions_nodelists:
                self.condition(condition, scope)
                self.nodelist(nodelist, scope)
        elif isinstance(node, WithNode):
            inner = dict(scope)
            for name, expression in node.extra_context.items():
                inner[name] = self.expression(expression, scope)
            self.nodelist(node.nodelist, inner)
        elif isinstance(node, BlockTranslateNode):
            self.blocktranslate(node, scope)
        else:
            self.generic(node, scope)

    def for_node(self, node: ForNode, scope: Scope) -> None:
        inner = dict(scope)
        sequence: Any = node.sequence
        variable = sequence.var if not sequence.filters else None
        lookups = list(variable.lookups or ()) if isinstance(variable, Variable) else []
        if len(node.loopvars) == 2 and len(lookups) > 1 and lookups[-1] == "items":
            # {% for key, value in data.items %}: data is a mapping.
            mapping = self.lookup(lookups[:-1], scope)
            inner[node.loopvars[0]] = _Slot()
            inner[node.loopvars[1]] = mapping.child(node.loopvars[0])
        else:
            item = self.expression(sequence, scope).element()
            if len(node.loopvars) == 1:
                inner[node.loopvars[0]] = item
            else:
                item.parts = item.parts or [_Slot() for _name in node.loopvars]
                inner.update(zip(node.loopvars, item.parts, strict=False))
        self.nodelist(node.nodelist_loop, inner)
        self.nodelist(node.nodelist_empty, scope)

    def condition(self, condition: Any, scope: Scope) -> None:
        if condition is None:  # {% else %}
            return
        value = getattr(condition, "value", None)
        if isinstance(value, FilterExpression):
            self.expression(value, scope)
        for side in ("first", "second"):
            operand = getattr(condition, side, None)
            if operand is not None:
                self.condition(operand, scope)

    def blocktranslate(self, node: BlockTranslateNode, scope: Scope) -> None:
        inner = dict(scope)
        for name, expression in node.extra_context.items():
            inner[name] = self.expression(expression, scope)
        if node.countervar and node.counter is not None:
            self.expression(node.counter, scope)
            inner[node.countervar] = _Slot()
        for token in [*(node.singular or ()), *(node.plural or ())]:
            if token.token_type == TokenType.VAR:
                self.lookup(token.contents.split("."), inner)

    def generic(self, node: Node, scope: Scope) -> None:
        """Any other tag: every template expression among its attributes, then its child nodelists."""
        for name, value in vars(node).items():
            if name in ("token", "origin") or isinstance(value, (str, NodeList)):
                continue
            values = (
                value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            )
            for item in values:
                if isinstance(item, (FilterExpression, Variable)):
                    self.expression(item, scope)
        for attribute in getattr(node, "child_nodelists", ()):
            self.nodelist(getattr(node, attribute, None), scope)


def sample_context(*sources: str, engine: Engine | None = None) -> dict[str, Any]:
    """A sample context for these template sources: every variable they read, nested as they read it.

    Each leaf is its own name as a string. Sources that do not compile are
    skipped. ``engine`` defaults to the one database templates compile with.
    """
    if engine is None:
        engine = database_template_engine()
    walker = _Walker()
    for source in sources:
        if not source:
            continue
        try:
            compiled = compile_source(engine, source)
        except Exception:  # noqa: BLE001,S112 - a source that does not compile adds no variables
            continue
        walker.nodelist(compiled.nodelist, {})
    return {name: slot.sample(name) for name, slot in walker.root.children.items()}


def template_variables(*sources: str, engine: Engine | None = None) -> list[str]:
    """The top-level names these sources read from the context, sorted."""
    return sorted(sample_context(*sources, engine=engine))
