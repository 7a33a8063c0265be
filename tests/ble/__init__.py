"""BLE discovery, drivers and decoders, against bleak's real BlueZ backend on a mocked BlueZ."""
