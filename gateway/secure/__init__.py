"""Authentication of commands and encryption of personal data at rest."""
