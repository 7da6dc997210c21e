"""A Trio prediction service for ML models, with throttled, ordered, signed webhooks.

Model code imports :func:`Input` and :class:`CancelationException` from here; servers and
tests build an app with :func:`create_app`.
"""

from ._app import PredictionApp, create_app
from ._config import Config
from ._inputs import Input
from ._predictor import CancelationException, PredictorLoadError
from ._version import __version__

__all__ = [
    "CancelationException",
    "Config",
    "Input",
    "PredictionApp",
    "PredictorLoadError",
    "__version__",
    "create_app",
]
