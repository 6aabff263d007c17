"""Built-in model definitions, one TOML file per published model (see moesim.specs.load.load_model).

A package (this file) so that setuptools ships every *.toml here as package data.
"""
