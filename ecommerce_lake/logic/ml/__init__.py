"""Forecasts, inventory policy and customer segments."""
