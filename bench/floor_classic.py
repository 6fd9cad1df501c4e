"""The least work a classic AGI with Screener's inputs does before answering.

Like screener-agi, it reads the TOML configuration and queries the SQLite
database before its first command, because the allow and block lists decide
whether a call is answered at all. It runs no call flow, so its start-up is a
lower bound for any classic AGI built on pyst2, tomllib and sqlite3.
"""

import os
import sqlite3
import tomllib

from asterisk.agi import AGI

with open(os.environ["SCREENER_CONFIG"], "rb") as config_file:
    config = tomllib.load(config_file)
agi = AGI()
connection = sqlite3.connect(config["database"]["path"])
connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
agi.answer()
