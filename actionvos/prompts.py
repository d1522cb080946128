"""Prompts for offline inference: an action plus object names, rendered with the ``promptaction`` template.

Spec section 4: the released model was trained on ``"{object} used in the action of {action}"`` with the
EK-100 narration verbatim, so the text is used exactly as given (no lowercasing, spec 3.1).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Mapping

from actionvos.errors import InputError

__all__ = ["Prompt", "MAX_OBJECTS", "parse_objects", "check_template", "check_action_objects", "build_prompts",
           "prompts_from_expressions", "object_name"]

#: Labels are stored as uint8 with 0 = background, so at most 255 objects per video (spec 3.9 step 4).
MAX_OBJECTS = 255


@dataclass(frozen=True)
class Prompt:
    """One referring expression: ``name`` labels the object in outputs, ``text`` is what the model reads."""

    name: str
    text: str


def parse_objects(objects: str | list[str]) -> list[str]:
    """Split ``"box,pen,right hand"`` (or take a list) into stripped object names, in the given order.

    Raises:
        InputError: when the list is empty, an entry is blank (``"box,,pen"``), a name repeats
            (compared case-insensitively), or there are more than :data:`MAX_OBJECTS` names.
    """
    parts = objects.split(",") if isinstance(objects, str) else list(objects)
    names = [p.strip() for p in parts]
    if not any(names):
        raise InputError("no object names given; pass --objects with a comma-separated list, e.g. --objects \"box,pen,right hand\"")
    for i, name in enumerate(names):
        if not name:
            raise InputError(f"object name {i + 1} of --objects {objects!r} is empty; remove the extra comma")
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            raise InputError(f"object {name!r} is listed twice in --objects; each object needs a distinct name")
        seen[key] = name
    if len(names) > MAX_OBJECTS:
        raise InputError(f"{len(names)} objects given; at most {MAX_OBJECTS} fit in the uint8 label PNGs")
    return names


def check_template(template: str) -> str:
    """Return ``template`` if it is a valid prompt template with exactly the fields ``{object}`` and ``{action}``.

    Raises:
        InputError: when a field is missing, an unknown field is used, or the braces do not parse.
    """
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise InputError(f"prompt template {template!r} does not parse ({err}); escape literal braces as {{{{ }}}}") from None
    missing = {"object", "action"} - fields
    extra = fields - {"object", "action"}
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join("{" + f + "}" for f in sorted(missing)))
        if extra:
            parts.append("unknown " + ", ".join("{" + f + "}" for f in sorted(extra)))
        raise InputError(f"prompt template {template!r} must contain {{object}} and {{action}} only ({'; '.join(parts)})")
    return template


def check_action_objects(action: str | None, objects: str | list[str] | None) -> tuple[str, list[str]]:
    """Check ``--action`` / ``--objects`` before any model is loaded; returns ``(action stripped, object names)``.

    Raises:
        InputError: empty or missing action, bad object list (see :func:`parse_objects`).
    """
    if action is None or not action.strip():
        raise InputError("the action is empty; pass --action with the narration, e.g. --action \"move box\"")
    if objects is None:
        raise InputError("no object names given; pass --objects with a comma-separated list, e.g. --objects \"box,pen,right hand\"")
    return action.strip(), parse_objects(objects)


def build_prompts(action: str | None, objects: str | list[str] | None, template: str) -> list[Prompt]:
    """Render one prompt per object: ``template.format(object=name, action=action)`` (spec 4, ``promptaction``).

    Args:
        action: the narration, used verbatim after stripping surrounding whitespace, e.g. ``"move box"``.
        objects: ``"box,pen,right hand"`` or a list of names; prompt ``i`` gets label ``i + 1`` in the PNGs.
        template: the model card's template (or its override); must contain ``{object}`` and ``{action}``.

    Raises:
        InputError: empty or missing action, bad object list (see :func:`parse_objects`), bad template.
    """
    action, names = check_action_objects(action, objects)
    check_template(template)
    return [Prompt(name=n, text=template.format(object=n, action=action)) for n in names]


def object_name(text: str, template: str | None) -> str:
    """The object name in a rendered prompt: the text before the template's separator
    (``"bread used in the action of ..."`` → ``"bread"``), or the whole text when it does not match or no template."""
    if not template or "{object}" not in template:
        return text
    sep = template.split("{object}", 1)[1].split("{action}", 1)[0]
    return (text.split(sep, 1)[0].strip() or text) if sep and sep in text else text


def prompts_from_expressions(expressions: Mapping[str, Mapping], where: str, template: str | None = None) -> list[Prompt]:
    """Prompts of one video of an ActionVOS ``expression_file.json`` (spec 5.3), in numeric key order "0", "1", ...

    Each ``exp`` is used verbatim. The object name is :func:`object_name` of it with ``template`` (the model card's;
    None names each object by its whole ``exp`` until the card is known: see :func:`object_name`).

    Raises:
        InputError: no expressions, a missing/empty ``exp``, non-integer keys, or too many expressions;
            the message names ``where`` (the video).
    """
    if not isinstance(expressions, Mapping) or not expressions:
        raise InputError(f"{where}: 'expressions' is missing or empty")
    try:
        keys = sorted(expressions, key=int)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expression keys must be integers as strings (\"0\", \"1\", ...), got {sorted(expressions)}") from None
    if len(keys) > MAX_OBJECTS:
        raise InputError(f"{where}: {len(keys)} expressions; at most {MAX_OBJECTS} fit in the uint8 label PNGs")
    prompts = []
    for k in keys:
        entry = expressions[k]
        text = entry.get("exp") if isinstance(entry, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: expression {k!r} has no 'exp' text")
        prompts.append(Prompt(name=object_name(text, template), text=text))
    return prompts
