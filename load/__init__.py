"""The SRE load-test suite: seed a realistic network, drive it with locust, judge the result.

`python -m load.run` is the entry point (see `load/README.md`); `load/locustfile.py` holds the
simulated users and the traffic shapes.
"""
