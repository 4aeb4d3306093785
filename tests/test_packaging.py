"""The wheel installs and imports from outside the repository; ``clear-plugins --help`` lists every sub-command."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from clear_plugins.cli import COMMANDS, _command_module, main

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clear_plugins", "clear_plugins.adapters", "clear_plugins.trl_ext", "clear_plugins.hub_cards")


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = root.glob("clear_plugins-*.whl")
    env_dir = root / "venv"
    # A bare venv that sees the packages of the environment running the tests (a venv or not), never the
    # repository: system_site_packages would show the base interpreter's packages instead of the active venv's.
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    active = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (Path(purelib) / "_active_environment.pth").write_text("\n".join(active) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
    )
    return python, wheel


def test_wheel_contains_the_four_packages_and_no_top_level_adapters(wheel_env):
    import zipfile

    _, wheel = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package.replace('.', '/')}/__init__.py" in names
    assert not any(name.startswith(("adapters/", "trl_ext/", "hub_cards/", "tests/")) for name in names)
    assert "clear_plugins/resources/system_prompt.txt" in names
    assert "clear_plugins/resources/sample_vqa/sample.jsonl" in names
    assert "clear_plugins/adapters/bagel/resources/official_keys.json" in names


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {folder: package for package, folder in config["package-dir"].items()}
    found = set()
    for folder, package in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *relative)))
    assert found == set(config["packages"]), "pyproject's [tool.setuptools] packages and the folders disagree"


def test_wheel_imports_from_outside_the_repository(wheel_env, tmp_path):
    python, _ = wheel_env
    code = (
        "import importlib, sys\n"
        f"mods = [importlib.import_module(m) for m in {PACKAGES!r}]\n"
        "print(mods[0].__file__)\n"
        "assert all(m.__file__.startswith(sys.prefix) for m in mods), [m.__file__ for m in mods]\n"
        "import clear_plugins.adapters.base, clear_plugins.plugins, clear_plugins.cli\n"
        "clear_plugins.cli.build_parser()\n"
        "print(sorted(clear_plugins.plugins.load_plugins().degradations)[:1])\n"
    )
    result = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(REPO) not in result.stdout


def test_light_imports_do_not_import_torch(tmp_path):
    code = (
        "import sys, clear_plugins\n"
        "from clear_plugins import load_plugins, BridgeMode\n"
        "from clear_plugins.cli import build_parser\n"
        "build_parser()\n"
        "load_plugins().degradations\n"
        "assert 'torch' not in sys.modules and 'trl' not in sys.modules, 'light path imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_clear_help_lists_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("degrade", "bench", "data", "train", "eval", "demo", "export", "upload"):
        assert name in out and name in COMMANDS


def test_unbuilt_subcommands_say_so_and_exit_non_zero(capsys):
    unbuilt = [name for name in COMMANDS if _command_module(name) is None]
    for name in unbuilt:
        assert main([name, "--anything"]) == 2
        assert "not built yet" in capsys.readouterr().err


def test_console_script_is_installed():
    import sysconfig

    script = Path(sysconfig.get_path("scripts")) / "clear-plugins"  # this environment's, whatever PATH says
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "degrade" in result.stdout
