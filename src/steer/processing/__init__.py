"""Stream processing: JSON joining/de-dup/validation, usage estimation."""
