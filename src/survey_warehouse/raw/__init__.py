"""The raw layer: a delivered wave's cells in the warehouse, the registry of its loads, and the builds made from them.

- `load`: reading a delivery into raw as a new load (checks, resolutions, quarantine)
- `builds`: which loads a build of the marts is made from
"""
