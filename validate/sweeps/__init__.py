"""Bundled sweep files (``*.toml``); a package only so that wheels ship them as package data."""
