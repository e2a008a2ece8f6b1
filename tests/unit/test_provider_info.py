"""Airflow discovers the installed provider and its ``inexchange`` connection type."""

from __future__ import annotations

from importlib.metadata import entry_points


def test_entry_point_points_at_provider_info() -> None:
    points = [p for p in entry_points(group="apache_airflow_provider") if p.value.startswith("inexchange.")]
    assert [p.value for p in points] == ["inexchange.get_provider_info:get_provider_info"]
    info = points[0].load()()
    assert info["package-name"] == "airflow-provider-inexchange"


def test_providers_manager_sees_hook_and_relabelled_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-inexchange" in manager.providers
    hook = manager.hooks["inexchange"]
    assert hook.hook_class_name == "inexchange.hooks.inexchange.InExchangeHook"
    assert hook.connection_id_attribute_name == "inexchange_conn_id"
    behaviour = manager.field_behaviours["inexchange"]
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "API key"}
    widget = manager.connection_form_widgets["extra__inexchange__erp_id"]
    assert widget.field["schema"]["title"] == "ERP id"


def test_every_listed_module_imports() -> None:
    import importlib

    from inexchange.get_provider_info import get_provider_info

    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for connection in info["connection-types"]:
        module, _, name = connection["hook-class-name"].rpartition(".")
        assert getattr(importlib.import_module(module), name).conn_type == connection["connection-type"]


def test_the_config_section_declares_the_options_the_provider_reads() -> None:
    from inexchange.get_provider_info import get_provider_info
    from inexchange.peppol import RULES_OPTION

    options = get_provider_info()["config"]["inexchange"]["options"]
    assert set(options) == {"api_pool", RULES_OPTION}
    for option in options.values():
        assert set(option) == {"description", "version_added", "type", "example", "default"}
        assert option["type"] == "string" and option["description"].endswith("\n")
    assert options["api_pool"]["default"] == ""
    assert options[RULES_OPTION]["default"] is None  # unset: conf.get falls back to None
