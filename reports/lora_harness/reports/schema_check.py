"""Does a document have the shape of run.schema.json? A small reader of the schema's core.

Only the structure is enforced (type, required, properties, items, enum, $ref): enough that
every renderer and `compare` find what they index, without a jsonschema dependency at run
time. Returns the first problem as "where: what", or None.
"""

from __future__ import annotations

TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def first_problem(document, schema: dict) -> str | None:
    return _walk(document, schema, schema, "")


def _walk(value, node: dict, root: dict, where: str) -> str | None:
    if "$ref" in node:
        node = _resolve(node["$ref"], root)
    kinds = node.get("type")
    if kinds is not None and not any(_is(value, k) for k in _listed(kinds)):
        return f"{where or 'the document'} is {_name(value)}, not {' or '.join(_listed(kinds))}"
    if "enum" in node and value not in node["enum"]:
        return f"{where} is {value!r}, not one of {', '.join(map(repr, node['enum']))}"
    if isinstance(value, dict):
        for key in node.get("required", []):
            if key not in value:
                return f"{_join(where, key)} is missing"
        for key, child in node.get("properties", {}).items():
            if key in value and (problem := _walk(value[key], child, root, _join(where, key))):
                return problem
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            if problem := _walk(item, node["items"], root, f"{where}[{index}]"):
                return problem
    return None


def _resolve(ref: str, root: dict) -> dict:
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _listed(kinds) -> list[str]:
    return kinds if isinstance(kinds, list) else [kinds]


def _is(value, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, TYPES[kind])


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _name(value) -> str:
    for kind in TYPES:
        if _is(value, kind):
            return f"a{'n' if kind[0] in 'aeiou' else ''} {kind}"
    return type(value).__name__
