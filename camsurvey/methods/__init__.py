"""Every method of the survey, grouped as the survey groups them.

=====================  ===========================================================
module                 methods
=====================  ===========================================================
``activation``         CAM, Eigen-CAM (no gradients, no extra passes)
``gradient``           Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM
``perturbation``       Score-CAM, Ablation-CAM, Recipro-CAM (gradient-free)
``smoothing``          SmoothGrad, Smooth Grad-CAM++, SS-CAM, IG, Integrated Grad-CAM, IS-CAM (Section III)
``helpers``            EVET, SESS (wrap any base method; Section IV)
=====================  ===========================================================

Importing a module registers its methods in :data:`METHODS`, which lists them in the survey's
order whatever the order of the imports.
"""

from . import activation, gradient, helpers, perturbation, smoothing  # noqa: F401  (register the methods)
from .registry import FAMILIES, METHODS, LayerShape, Method, explain, get_method, register

__all__ = ["FAMILIES", "METHODS", "LayerShape", "Method", "explain", "get_method", "register"]
