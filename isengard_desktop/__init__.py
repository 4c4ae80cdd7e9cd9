"""Isengard Desktop: identity LoRAs from a folder of photos, trained and used offline."""

__version__ = "0.1.0"
APP_NAME = "Isengard Desktop"
