"""Go types for the wire contracts, generated from the committed JSON Schemas (docs/schema/) and
the key names (services/keys.py): `wan22 schema --go` writes clients/go/wan22/wan22_gen.go.
The output is gofmt-formatted as written, and a test keeps it current."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from services import keys as key_module
from services.contracts import TERMINAL
from services.schema import DEFAULT_DIR as SCHEMA_DIR

ROOT = Path(__file__).resolve().parent.parent
GO_FILE = ROOT / "clients" / "go" / "wan22" / "wan22_gen.go"

_INITIALISMS = {"id": "ID", "url": "URL", "ts": "TS", "dlq": "DLQ", "ttl": "TTL", "json": "JSON"}
_P, _A, _B = "\x00", "\x01", "\x02"  # placeholders: prefix, first and second argument


def go_name(snake: str) -> str:
    return "".join(_INITIALISMS.get(part, part[:1].upper() + part[1:]) for part in snake.split("_"))


def _go_type(prop: dict[str, Any]) -> tuple[str, bool]:
    """The Go type of a schema property, and whether it may be null."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1], False
    if "anyOf" in prop:
        options = [option for option in prop["anyOf"] if option != {"type": "null"}]
        nullable = len(options) < len(prop["anyOf"])
        if len(options) > 1:
            return "any", nullable  # e.g. guide_scale: a number or a pair
        return _go_type(options[0])[0], nullable
    if "enum" in prop:
        return "string", False
    kind = prop.get("type")
    if kind == "object":
        return "map[string]" + _go_type(prop.get("additionalProperties", {"type": "string"}))[0], False
    if kind == "array":
        items = prop.get("prefixItems", [prop.get("items", {})])[0]
        return "[]" + _go_type(items)[0], False
    simple = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}
    return simple.get(kind or "", "any"), False


def _field_type(prop: dict[str, Any]) -> str:
    kind, nullable = _go_type(prop)
    nil_able = kind == "any" or kind.startswith(("map[", "[]"))
    return f"*{kind}" if nullable and not nil_able else kind


def _doc(text: str, indent: str = "") -> list[str]:
    words = " ".join(text.split())
    return [f"{indent}// {line}" for line in _wrap(words, 96)] if words else []


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _struct(name: str, definition: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    required = set(definition.get("required", []))
    rows = []
    for prop_name, prop in sorted(definition["properties"].items()):
        if prop_name in skip:
            continue
        tag = prop_name if prop_name in required else f"{prop_name},omitempty"
        rows.append((go_name(prop_name), _field_type(prop), f'`json:"{tag}"`'))
    description = definition.get("description", "")
    lines = _doc(f"{name}: {description}" if description else f"{name} is the wire type {name}.")
    lines.append(f"type {name} struct {{")
    width_name = max(len(row[0]) for row in rows)
    width_type = max(len(row[1]) for row in rows)
    for field, kind, tag in rows:
        lines.append(f"\t{field.ljust(width_name)} {kind.ljust(width_type)} {tag}")
    return [*lines, "}", ""]


def _load(name: str, directory: Path) -> dict[str, Any]:
    return json.loads((directory / f"{name}.json").read_text())


def _types(directory: Path) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for schema_name in ("request", "job", "progress", "task_state", "dead_letter"):
        for name, definition in sorted(_load(schema_name, directory)["$defs"].items()):
            if name not in seen:
                seen.add(name)
                out += _struct(name, definition)
    return out


def _events(directory: Path) -> list[str]:
    schema = _load("event", directory)
    mapping = schema["discriminator"]["mapping"]
    tag_field = schema["discriminator"]["propertyName"]
    out: list[str] = [
        "// Event is one lifecycle event on the events stream; its concrete type is one of the",
        "// structs below, chosen by the entry's `type` field.",
        "type Event interface {",
        "\tEventType() string",
        "\tEventTaskID() string",
        "}",
        "",
    ]
    for tag, ref in sorted(mapping.items()):
        name = ref.rsplit("/", 1)[-1]
        out += _struct(name, schema["$defs"][name], skip=frozenset({tag_field}))
        out += [
            f"// EventType is {json.dumps(tag)}.",
            f'func (e *{name}) EventType() string {{ return "{tag}" }}',
            "",
            "// EventTaskID is the task the event belongs to.",
            f"func (e *{name}) EventTaskID() string {{ return e.TaskID }}",
            "",
        ]
    out += [
        "// DecodeEvent decodes an event's JSON payload by its type (the entry's `type` field).",
        "func DecodeEvent(eventType string, payload []byte) (Event, error) {",
        "\tvar event Event",
        "\tswitch eventType {",
    ]
    for tag, ref in sorted(mapping.items()):
        out += [f'\tcase "{tag}":', f"\t\tevent = &{ref.rsplit('/', 1)[-1]}{{}}"]
    out += [
        "\tdefault:",
        '\t\treturn nil, fmt.Errorf("wan22: unknown event type %q", eventType)',
        "\t}",
        "\tif err := json.Unmarshal(payload, event); err != nil {",
        '\t\treturn nil, fmt.Errorf("wan22: %s event: %w", eventType, err)',
        "\t}",
        "\treturn event, nil",
        "}",
        "",
    ]
    return out


def _hash_reader(directory: Path) -> list[str]:
    """TaskStateFromHash: the task hash holds every value as a string (metadata as JSON)."""
    definition = _load("task_state", directory)["$defs"]["TaskState"]
    out = [
        "// TaskStateFromHash reads the task hash (HGETALL of Keys.Task(taskID)): every value a string,",
        "// metadata as JSON. Fields it does not know are ignored, so newer services can add some.",
        "func TaskStateFromHash(taskID string, hash map[string]string) (TaskState, error) {",
        "\tstate := TaskState{TaskID: taskID}",
        "\tfor name, value := range hash {",
        "\t\tvar err error",
        "\t\tswitch name {",
    ]
    for prop_name, prop in sorted(definition["properties"].items()):
        kind = _field_type(prop)
        field = f"state.{go_name(prop_name)}"
        if prop_name == "task_id" or kind.startswith("*"):
            continue  # the key, and what is never stored in the hash
        out.append(f'\t\tcase "{prop_name}":')
        if kind == "string":
            out.append(f"\t\t\t{field} = value")
        elif kind == "int64":
            out.append(f"\t\t\t{field}, err = strconv.ParseInt(value, 10, 64)")
        elif kind == "float64":
            out.append(f"\t\t\t{field}, err = strconv.ParseFloat(value, 64)")
        else:
            out.append(f"\t\t\terr = json.Unmarshal([]byte(value), &{field})")
    out += [
        "\t\t}",
        "\t\tif err != nil {",
        '\t\t\treturn state, fmt.Errorf("wan22: task hash field %s: %w", name, err)',
        "\t\t}",
        "\t}",
        "\treturn state, nil",
        "}",
        "",
    ]
    return out


def _template(value: str, args: dict[str, str]) -> str:
    """A key evaluated with placeholders → a Go string expression."""
    names = {_P: "k.Prefix", **args}
    parts = [p for p in re.split(f"([{_P}{_A}{_B}])", value) if p]
    return " + ".join(names.get(p, json.dumps(p)) for p in parts)


def _keys() -> list[str]:
    keys = key_module.Keys(prefix=_P)
    out = [
        '// Keys spells every Redis key under one prefix (WAN22_PREFIX, default "wan22").',
        "type Keys struct {",
        "\tPrefix string",
        "}",
        "",
        "// DefaultKeys are the keys under the default prefix.",
        f"func DefaultKeys() Keys {{ return Keys{{Prefix: {json.dumps(key_module.Keys().prefix)}}} }}",
        "",
    ]
    properties = {"requests": "Requests", "events": "Events", "dlq": "DLQ", "deadlines": "Deadlines"}
    for attr, name in properties.items():
        example = json.dumps(getattr(key_module.Keys(), attr))
        value = _template(getattr(keys, attr), {})
        signature = f"func (k Keys) {name}() string"
        out += [f"// {name} is the key {example} under the prefix.", f"{signature} {{ return {value} }}", ""]
    one_arg = {"task": ("Task", "taskID"), "cancel": ("Cancel", "taskID"), "run_times": ("RunTimes", "task")}
    for attr, (name, arg) in one_arg.items():
        value = _template(getattr(keys, attr)(_A), {_A: arg})
        signature = f"func (k Keys) {name}({arg} string) string"
        out += [f"// {name} is the key of one {arg}.", f"{signature} {{ return {value} }}", ""]
    default = key_module.Keys()
    progress_default = json.dumps(default.progress)
    out += [
        "// Progress is the per-step progress stream (its first name kept under the default prefix).",
        "func (k Keys) Progress() string {",
        f"\tif k.Prefix == {json.dumps(default.prefix)} {{",
        f"\t\treturn {progress_default}",
        "\t}",
        f"\treturn {_template(keys.progress, {})}",
        "}",
        "",
        '// Jobs is the job stream of a task at a priority ("" is the default priority).',
        "func (k Keys) Jobs(task, priority string) string {",
        "\tswitch priority {",
    ]
    for priority in key_module.PRIORITIES:
        if priority != key_module.DEFAULT_PRIORITY:
            out += [f'\tcase "{priority}":', f"\t\treturn {_template(keys.jobs(_A, priority), {_A: 'task'})}"]
    out += [
        "\t}",
        f"\treturn {_template(keys.jobs(_A), {_A: 'task'})}",
        "}",
        "",
        "// JobStreams are every job stream of a task, highest priority first.",
        "func (k Keys) JobStreams(task string) []string {",
        "\tstreams := make([]string, 0, len(Priorities))",
        "\tfor _, priority := range Priorities {",
        "\t\tstreams = append(streams, k.Jobs(task, priority))",
        "\t}",
        "\treturn streams",
        "}",
        "",
    ]
    return out


def _constants() -> list[str]:
    groups = {"IngestGroup": key_module.INGEST_GROUP, "GeneratorGroup": key_module.GENERATOR_GROUP,
              "NotifierGroup": key_module.NOTIFIER_GROUP}  # fmt: skip
    width = max(len(name) for name in groups)
    out = ["// Consumer groups of the services.", "const ("]
    out += [f"\t{name.ljust(width)} = {json.dumps(value)}" for name, value in groups.items()]
    out += [")", ""]
    priorities = ", ".join(json.dumps(p) for p in key_module.PRIORITIES)
    out += [
        "// Priorities of a request, highest first.",
        f"var Priorities = []string{{{priorities}}}",
        "",
        "// DefaultPriority is the priority of a request that names none.",
        f"const DefaultPriority = {json.dumps(key_module.DEFAULT_PRIORITY)}",
        "",
        "// IsTerminal says whether a task status is final (exactly one terminal event per task).",
        "func IsTerminal(status string) bool {",
        "\tswitch status {",
        f"\tcase {', '.join(json.dumps(s) for s in sorted(TERMINAL))}:",
        "\t\treturn true",
        "\t}",
        "\treturn false",
        "}",
        "",
    ]
    return out


def render(directory: Path = SCHEMA_DIR) -> str:
    lines = [
        "// Code generated by `wan22 schema --go` from docs/schema/ and services/keys.py. DO NOT EDIT.",
        "",
        "package wan22",
        "",
        "import (",
        '\t"encoding/json"',
        '\t"fmt"',
        '\t"strconv"',
        ")",
        "",
        *_constants(),
        *_keys(),
        *_types(directory),
        *_events(directory),
        *_hash_reader(directory),
    ]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def write(path: Path = GO_FILE, directory: Path = SCHEMA_DIR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(directory))
    return path
