"""Configuration: defaults, file, environment and overrides; one-line errors naming file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from carlinkd.cli import main
from carlinkd.config import Config, build_config, load_config, to_toml
from carlinkd.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "carlinkd.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert cfg.can.interface is None and cfg.decode.dbc == ()


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, """
[can]
interface = "socketcand"
channel = "vcan0"
bitrate = 500000
filters = [{ can_id = 0x7E8, can_mask = 0x7F8 }]
options = { host = "127.0.0.1", port = 29536 }
[decode]
dbc = ["a.dbc", "b.kcd"]
subscribe = ["EngineData.EngineData_Counter"]
[decode.catalog."Foo.Bar"]
name = "Vehicle.Foo"
unit = "km"
""")
    cfg = load_config(path, env={})
    assert cfg.can.interface == "socketcand" and cfg.can.bitrate == 500000
    assert cfg.can.filters[0].can_id == 0x7E8 and cfg.can.filters[0].extended is False
    assert cfg.can.options == {"host": "127.0.0.1", "port": 29536}
    assert cfg.decode.dbc == (Path("a.dbc"), Path("b.kcd"))
    assert cfg.decode.catalog["Foo.Bar"].unit == "km"
    assert cfg.can.reconnect_max_s == 30.0  # untouched default


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[can]\ninterface = "virtual"\nchannel = "file"\nbitrate = 250000\n')
    env = {"CARLINKD_CAN_CHANNEL": "env", "CARLINKD_CAN_BITRATE": "0x7A120",
           "CARLINKD_DECODE_STRICT": "no", "UNRELATED": "x"}
    cfg = load_config(path, env=env, overrides={"can": {"channel": "cli"}})
    assert cfg.can.interface == "virtual"
    assert cfg.can.channel == "cli"
    assert cfg.can.bitrate == 500000
    assert cfg.decode.strict is False


@pytest.mark.parametrize("text, key, expected", [
    ('[can]\nbitrate = "fast"\n', "can.bitrate", "expected an integer, got a string"),
    ('[can]\nbitrat = 5\n', "can.bitrat", "unknown key; expected one of"),
    ('[cann]\n', "cann", "unknown key; expected one of"),
    ('[daemon]\nlog_level = "loud"\n', "daemon.log_level", "expected one of 'debug'"),
    ('[can]\nfd = 1\n', "can.fd", "expected a boolean, got an integer"),
    ('[can]\nfilters = [{ can_id = "x" }]\n', "can.filters[0].can_id", "expected an integer"),
    ('can = 3\n', "can", "expected a table, got an integer"),
    ('[decode]\ndbc = "one.dbc"\n', "decode.dbc", "expected an array"),
])
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, key: str,
                                               expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ")
    assert expected in message
    assert "\n" not in message


def test_env_error_names_environment() -> None:
    with pytest.raises(ConfigError, match=r"^environment: can.bitrate: expected an integer"):
        load_config(None, env={"CARLINKD_CAN_BITRATE": "lots"})


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[can\n"), env={})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_to_toml_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, '[can]\ninterface = "virtual"\noptions = { port = 1 }\n'
                 '[decode.catalog."A.B"]\nname = "Vehicle.X"\n')
    cfg = load_config(path, env={})
    again = write(tmp_path, to_toml(cfg))
    assert load_config(again, env={}) == cfg
    assert tomllib.loads(to_toml(cfg))["can"]["interface"] == "virtual"


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, '[can]\ninterface = "virtual"\n')
    assert main(["config", "check", str(good)]) == 0
    assert 'interface = "virtual"' in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub]\nqueue_size = -\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"carlinkd: config error: {bad}: invalid TOML")
    assert err.count("\n") == 1


def test_readme_configuration_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    from carlinkd.config import build_config
    cfg = build_config([("README.md", tomllib.loads(example))])
    assert cfg.can.interface == "socketcan" and cfg.obd.addressing == "11bit"


@pytest.mark.parametrize(("layer", "message"), [
    ({"sync": {"status_interval_s": 0}}, "sync.status_interval_s: must be greater than 0, got 0"),
    ({"obd": {"startup_delay_s": -1}}, "obd.startup_delay_s: must not be negative, got -1"),
    ({"can": {"reconnect_max_s": float("inf")}}, "can.reconnect_max_s: must be a finite number"),
    ({"hmi": {"signals_interval_s": -0.5}}, "hmi.signals_interval_s: must be greater than 0"),
])
def test_out_of_range_quantities_are_refused_naming_the_key(layer: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config([("carlinkd.toml", layer)])
    assert message in str(err.value) and str(err.value).startswith("carlinkd.toml")


def test_zero_is_allowed_where_it_means_immediately() -> None:
    cfg = build_config([("carlinkd.toml", {"obd": {"startup_delay_s": 0}})])
    assert cfg.obd.startup_delay_s == 0
