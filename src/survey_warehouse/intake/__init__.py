"""Intake: what a delivered wave file is and how it is read, before anything is written to the warehouse.

- `waves`: the wave specs (how each year's export is read: format, encoding, header row, column -> field)
- `codebook`: the questionnaire as data (questions, answer labels, city names), read from the dbt seeds
- `matching`: the one rule for matching typed values to the codebook
- `verdict`: what a delivered file is, judged from its bytes (container, encoding, text) before it is parsed
- `grid`: reading a delivered file's cells into a grid in DuckDB, every cell as text with its row
"""
