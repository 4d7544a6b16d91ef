"""Alerts and maintenance: a pure rule engine (time passed in) and the hub adapter around it.

``carlinkd.alerts.engine.AlertEngine`` is the pure core; ``carlinkd.alerts.service.AlertService``
feeds it from the hub and persists through the store. Import those modules directly: this
package stays import-light because carlinkd.settings imports its settings.
"""
