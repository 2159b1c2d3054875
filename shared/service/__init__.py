"""The service layer: use cases that combine the domain rules, storage and events."""
