"""The bureau's work on cases (issue #7): the workflows (pure transition table), the tables, the operations."""
