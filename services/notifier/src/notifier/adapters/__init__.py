"""The notifier's adapters, one per external system: ``postgres``, ``kafka``."""
