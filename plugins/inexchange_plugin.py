"""The plugin entry module Airflow's loader reads from this plugins folder (see ``.airflowignore``).

It only names the provider's plugin, the "InExchange dispatch" page; the provider itself is the
package ``inexchange`` beside it, imported as a package. An installed provider distribution
registers the same plugin through its ``airflow.plugins`` entry point; Airflow keeps the first of
the two and skips the other by name.
"""

from inexchange.ui.plugin import InExchangeDispatchPlugin

__all__ = ["InExchangeDispatchPlugin"]
