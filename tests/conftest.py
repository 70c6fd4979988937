import os
import sys

from hypothesis import settings

# Make ``import reference`` work whatever the import mode / rootdir.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Deterministic by default so CI never flakes on a new random example; run with
# HYPOTHESIS_PROFILE=explore to search with fresh randomness locally.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
