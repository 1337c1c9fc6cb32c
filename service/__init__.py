"""The HTTP service: users, uploaded media and their analysis, live events, the live feed."""
