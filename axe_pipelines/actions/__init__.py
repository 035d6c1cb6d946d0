"""What each `axe` command does, shared by the CLI and the Dagster layer: one module per
command (backup, status, doctor, restore, integrity). An action takes the parsed
customers.yaml and plain options and returns data (dataclasses) that the caller prints or
records; none of them imports Dagster (the CLI hands in a runner for the Dagster runs).
"""
