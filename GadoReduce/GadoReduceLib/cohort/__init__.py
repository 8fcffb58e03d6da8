"""Cohorts: ``gadoreduce predict`` over many cases (a folder of case folders or a table of paths), the per-case
record's input fields and its JSON schema, and the cohort summary."""
