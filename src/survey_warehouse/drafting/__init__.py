"""Preparing a new wave before a run loads it: its spec and codebook rows proposed from the delivered file and the
earlier waves, and the wave checked on a scratch copy of the warehouse.

- `delivery`: how the file is read (format, encoding, delimiter, sheet, header row) and what each column holds,
  through intake's own readers
- `history`: the earlier waves (their specs and codebook rows) the proposals are drawn from
- `propose`: every column, answer and city spelling matched to the earlier waves, with its evidence
- `draft`: `draft_wave`: the proposals written into config/waves/YEAR.yml and the seeds, keeping what a person
  already decided, and the decisions left to a person
- `command`: `wave draft` on the command line
- `placeholders`: what a wave's configuration still leaves to a person (values starting with TODO)
- `check`: `wave check`: the wave's load and raw gate on a scratch copy, the headline preview, the diff with the
  previous wave; `check_draft`: the same for a draft not written into the project (drafted into the scratch copy,
  its proposals taken there), the preview a delivery without a wave spec is told with
"""
