"""Intake: what a delivered wave file is and how it is read, before anything is written to the warehouse.

- `waves`: the wave specs (how each year's export is read: format, encoding, header row, column -> field)
- `codebook`: the questionnaire as data (questions, answer labels, city names), read from the dbt seeds
- `matching`: the one rule for matching typed values to the codebook
- `delivery`: the verdict on a delivered file's container and text, and reading its cells into a grid
"""
