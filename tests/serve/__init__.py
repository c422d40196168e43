"""Tests of the subscription service (`newsletter serve`) and the mailto: unsubscribe path."""

import warnings

from starlette.exceptions import StarletteDeprecationWarning

# Starlette 1.x prefers the httpx2 fork for its TestClient and warns once, when
# starlette.testclient is imported, that it fell back to httpx (which the project uses). The
# warning is about Starlette's choice of client, not our code: silence that one message only.
warnings.filterwarnings(
    "ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning
)
