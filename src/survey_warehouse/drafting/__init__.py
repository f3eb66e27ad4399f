"""Drafting: a new wave's spec and codebook rows proposed from the delivered file and the earlier waves.

- `delivery`: how the file is read (format, encoding, delimiter, sheet, header row) and what each column holds,
  through intake's own readers
- `history`: the earlier waves (their specs and codebook rows) the proposals are drawn from
- `propose`: every column, answer and city spelling matched to the earlier waves, with its evidence
- `draft`: `draft_wave`: the proposals written into config/waves/YEAR.yml and the seeds, keeping what a person
  already decided, and the decisions left to a person
- `command`: `wave draft` on the command line
"""
