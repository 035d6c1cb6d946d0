"""Sensors (cold-SSD mount, failure alerts) are added by the tier C and drill work."""
