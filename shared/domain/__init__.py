"""The pure domain: models, statuses, rules. Imports nothing that does I/O."""
