import os

from hypothesis import HealthCheck, settings

# Round trips on tens of thousands of symbols: no per-example deadline, a modest count by
# default, more with HYPOTHESIS_PROFILE=long.
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
