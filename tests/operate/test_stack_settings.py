"""Every flag of `wan22 up` and `wan22 demo` has its `WAN22_*` variable; flags win over variables."""

from __future__ import annotations

import argparse
import typing

import msgspec
import pytest

from services import settings
from services.cli.main import build_parser
from services.stack.cli import UP_DEFAULT_PORT, up_options
from services.stack.settings import DemoSettings, UpSettings

COMMANDS = {"up": UpSettings, "demo": DemoSettings}


def _parser_of(command: str) -> argparse.ArgumentParser:
    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices[command]


def _sample(field: msgspec.structs.FieldInfo, variant: int) -> tuple[str, object]:
    """A value that differs from the default: its text for env/flag and the value it must parse to."""
    kind = field.type
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) is typing.Literal:
        choice = next(c for c in typing.get_args(kind) if c != field.default)
        return choice, choice
    if kind is int:
        return str(7 + variant), 7 + variant
    if typing.get_origin(kind) is list:
        return f"a{variant},b{variant}", [f"a{variant}", f"b{variant}"]
    return f"value-{variant}", f"value-{variant}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_its_variable_and_the_flag_wins(command: str):
    cls, parser = COMMANDS[command], _parser_of(command)
    flags = {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags == set(cls.__struct_fields__), "every flag is a setting and every setting a flag"
    for field in msgspec.structs.fields(cls):
        env_text, env_value = _sample(field, 1)
        flag_text, flag_value = _sample(field, 2)
        env = {settings.env_name(field.name): env_text}
        from_env = settings.from_args(cls, parser.parse_args([]), env)
        assert getattr(from_env, field.name) == env_value, field.name
        flag = "--" + field.name.replace("_", "-")
        texts = flag_value if isinstance(flag_value, list) else [flag_text]
        argv = [part for text in texts for part in (flag, text)]  # a list flag repeats
        from_flag = settings.from_args(cls, parser.parse_args(argv), env)
        assert getattr(from_flag, field.name) == flag_value, field.name


def test_up_takes_its_port_from_the_environment():
    args = _parser_of("up").parse_args([])
    assert up_options(args, {}).http_port == UP_DEFAULT_PORT
    assert up_options(args, {"WAN22_HTTP_PORT": "8123"}).http_port == 8123
    flagged = _parser_of("up").parse_args(["--http-port", "9001"])
    assert up_options(flagged, {"WAN22_HTTP_PORT": "8123"}).http_port == 9001
    assert up_options(args, {"WAN22_TASK": "t2v-A14B, demo"}).only == ["t2v-A14B", "demo"]


def test_a_bad_value_names_its_variable():
    args = _parser_of("demo").parse_args([])
    with pytest.raises(settings.SettingsError, match="WAN22_WORLD_SIZE"):
        settings.from_args(DemoSettings, args, {"WAN22_WORLD_SIZE": "0"})
    with pytest.raises(settings.SettingsError, match="WAN22_FSYNC"):
        settings.from_args(DemoSettings, args, {"WAN22_FSYNC": "never"})
