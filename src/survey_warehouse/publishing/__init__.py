"""Publishing: the marts that passed their gate, made readable to analysts and BI tools.

- `publish`: the published marts (a DuckDB file replaced atomically, or a PostgreSQL schema swap)
- `exports`: every published mart as Parquet and CSV
- `assets`: the Airflow asset that stands for the published marts
"""
