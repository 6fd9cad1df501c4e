"""The allow and block lists: rules, storage, files and handset feature codes.

``rules`` holds the entries and the in-memory index and imports nothing heavy,
so the classic AGI path can use it. ``store`` keeps the entries in the call-log
database, ``files`` reads and writes CSV and vCard, ``features`` runs the
handset feature codes, and ``commands`` is the ``screener allow|block`` CLI.
"""

# The AGI script path (FastAGI) or argument (classic AGI) that names a handset
# feature code, as in agi://127.0.0.1:4573/feature/block-last. It lives here,
# not in ``features``, so that classic AGI can read it without that module.
FEATURE_PREFIX = "feature/"
