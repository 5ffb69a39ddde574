"""Stand-in PXDesign package (tests/python/standin/README.md). Puts tests/ref on sys.path
for the reference code it is built from."""
import os
import sys

_REF = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "ref"))
if os.path.isdir(_REF) and _REF not in sys.path:
    sys.path.insert(0, _REF)
