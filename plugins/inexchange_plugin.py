"""The plugin entry module Airflow's loader reads from this plugins folder (see ``.airflowignore``).

It names the provider's plugin, the "InExchange dispatch" page; the provider itself is the package
``inexchange`` beside it, imported as a package (Airflow puts this folder on ``sys.path``).

Where the provider distribution is installed as well, its ``airflow.plugins`` entry point registers
the page, and this module names nothing: Airflow would otherwise report the second registration as
an import error.
"""

from importlib.metadata import entry_points

#: the plugin's name (``InExchangeDispatchPlugin.name``) and its entry point's in an installed distribution
PLUGIN_NAME = "inexchange_dispatch"

if not entry_points(group="airflow.plugins", name=PLUGIN_NAME):
    from inexchange.ui.plugin import InExchangeDispatchPlugin

    __all__ = ["InExchangeDispatchPlugin"]
