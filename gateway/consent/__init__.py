"""Consent: the data-category catalogue, the flags users set, and the decisions made from them."""
