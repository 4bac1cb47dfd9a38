"""Shipped datasets (installed as intakegate.data): refund-intake and banking77."""
