"""camsurvey: an executable textbook of Class Activation Map explainability.

    import camsurvey as cs
    model = cs.load_model("efficientnet_lite0")
    image = cs.load_image("chelsea")
    saliency = cs.explain("gradcam++", model, image)      # (B, H, W), in [0, 1]
"""

from .images import box_mask, bundled_photos, load_box, load_image, load_images, photo_annotations, read_photo
from .methods import FAMILIES, METHODS, Method, explain, get_method
from .models import MODELS, CamModel, imagenet_categories, load_model, register_model
from .predict import predict, top_k
from . import viz  # noqa: E402
from . import scenes  # noqa: E402
from . import metrics  # noqa: E402
from . import deploy  # noqa: E402  (ONNX export; onnxruntime is imported only when used)

__version__ = "0.1.0"

__all__ = [
    "FAMILIES", "METHODS", "MODELS", "CamModel", "Method", "box_mask", "bundled_photos", "explain",
    "get_method", "imagenet_categories", "load_box", "load_image", "load_images", "load_model",
    "photo_annotations", "predict", "read_photo", "register_model", "top_k",
]
