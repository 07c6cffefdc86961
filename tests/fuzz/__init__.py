"""Fuzz targets for every decoder of bytes from a peer (see campaign.py for the run modes)."""
