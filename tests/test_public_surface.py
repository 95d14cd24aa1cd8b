"""The public surface stays as users and plug-ins know it: the top-level imports, the library API under the CLI,
the entry-point groups plug-ins register through, and every command's --help."""

from __future__ import annotations

import pytest
import typer
from cli import run_cli

from vbench import api

API = ["load_plugins", "backbone_rows", "spec_row", "measure_rows", "suite_rows", "schedule_length", "backbone_info",
       "plan_run", "execute", "run_suite", "parse_seeds", "stored_backbone_names", "stored_backbone_name",
       "check_suite_name", "delete_run", "version_text", "dumps"]
ENTRY_POINT_GROUPS = {"vbench.backbones": "vbench.models.registry:BACKBONES",
                      "vbench.tasks": "vbench.tasks:TASKS",
                      "vbench.leaderboard": "vbench.leaderboard.sections:SECTIONS",
                      "vbench.charts": "vbench.reporting.plot:CHART_MAKERS"}


def test_the_top_level_imports():
    from vbench import create_backbone, list_backbones, register_backbone
    from vbench.models import registry

    assert (create_backbone, list_backbones, register_backbone) == (
        registry.create_backbone, registry.list_backbones, registry.register_backbone)
    assert create_backbone("vit-0.5m", img_size=8, num_classes=3)(__import__("torch").zeros(1, 3, 8, 8)).shape == (1, 3)


@pytest.mark.parametrize("name", API)
def test_the_library_api(name):
    function = getattr(api, name)
    assert callable(function) and function.__doc__, f"vbench.api.{name} is a documented function"


@pytest.mark.parametrize("group, registry_path", sorted(ENTRY_POINT_GROUPS.items()))
def test_the_entry_point_groups(group, registry_path):
    module, _, attribute = registry_path.partition(":")
    registry = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert registry.group == group


def commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [(*prefix, command.name or command.callback.__name__.replace("_", "-")) for command in group.registered_commands]
    for sub in group.registered_groups:
        found += [(*prefix, sub.name)] + commands(sub.typer_instance, (*prefix, sub.name))
    return found


def all_commands() -> list[tuple[str, ...]]:
    from vbench.cli import app

    return [()] + commands(app)


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: " ".join(c) or "vbench")
def test_every_command_answers_help(command):
    result = run_cli(*command, "--help")
    assert result.code == 0, result.out + result.err
    assert "Usage:" in result.out and "--help" in result.out
