"""Fuzz targets of ``python -m bench.fuzz_inputs``, one module per input the hub takes from
outside: ``ble`` (adverts), ``txt`` (mDNS TXT records), ``rpc`` (device answers), ``commands``
(MQTT requests, with ``params`` deriving each command's parameters from its handler); shared
``findings`` and ``values``; ``campaign`` runs them. ``python -m bench.fuzz`` runs the campaign
too."""
