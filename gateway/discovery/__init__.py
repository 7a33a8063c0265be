"""Transports that find devices: mDNS/DNS-SD over Wi-Fi (``mdns``) and BLE (``ble``)."""
