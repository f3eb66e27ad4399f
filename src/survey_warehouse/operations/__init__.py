"""Operations: what the people running the warehouse see and do around the runs.

- `inbox`, `inbox_trigger`: a file dropped into the inbox starts its wave's run
- `summary`: what the warehouse and the published marts hold, printed after a run
- `faults`: the cause of a failure in one sentence, with what to do
"""
