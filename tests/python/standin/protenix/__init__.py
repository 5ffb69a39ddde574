"""Stand-in for the parts of Protenix (v0.5.0+pxd) that PXDesign's sampling path imports
(tests/python/standin/README.md); written for these tests."""
