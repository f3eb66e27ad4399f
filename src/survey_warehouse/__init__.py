"""Warehouse for the survey of digitalisation leadership in Finland's 20 largest cities."""
