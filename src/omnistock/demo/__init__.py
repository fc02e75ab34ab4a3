"""The demo retailer (``omnistock seed --demo``, ``omnistock serve --demo``): a realistic network
and catalogue to try the API on, built deterministically from the bundled ``cities.csv``."""
