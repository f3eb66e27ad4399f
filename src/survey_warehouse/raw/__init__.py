"""The raw layer: a delivered wave's cells in the warehouse, the registry of its loads, and the builds made from them.

- `schema`: the raw layer's tables
- `registry`: the load registry: a load's lifecycle, the current load, fingerprints and whether a delivery is unchanged
- `load`: reading a delivery into raw as a new load (checks, resolutions, quarantine)
- `builds`: which loads a build of the marts is made from
"""
