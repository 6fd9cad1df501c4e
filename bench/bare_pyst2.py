"""The smallest classic AGI script: construct pyst2's ``AGI`` and answer."""

from asterisk.agi import AGI

AGI().answer()
