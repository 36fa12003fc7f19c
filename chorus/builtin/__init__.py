"""Chorus's built-in agents: ordinary plugins, listed in ``chorus.plugins.DEFAULT_PLUGINS``."""
