"""Sensors: the cold-SSD mount sensor (cold.py) and the ring peers' inbound pushes
(inbound.py)."""
