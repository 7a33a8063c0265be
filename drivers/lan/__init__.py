"""The LAN inventory of DNS-SD families: ``drivers.lan.inventory`` holds the declared table,
``drivers.lan.families`` the TXT parsers of families without a telemetry driver and
``drivers.lan.listing`` the parsed form and the checks every parser shares.
"""
