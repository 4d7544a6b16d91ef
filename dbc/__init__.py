"""The demo vehicle DBC files, shipped with the package as carlinkd.dbc."""
